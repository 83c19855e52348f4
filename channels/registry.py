"""The channels, by name. Adding one is a folder channels/<name>/ and one line in CHANNELS.
The web channel is the approver portal's (portal/channel.py): the portal is that channel's
folder, an app already installed, and its URLs are included through here like any channel's.

Entries are dotted paths, imported on first use, so decisions (which asks the registry which
channels exist) never imports a channel implementation itself.
"""

from __future__ import annotations

import importlib.util
from functools import cache
from typing import TYPE_CHECKING

from django.urls import URLPattern, URLResolver, include, path
from django.utils.module_loading import import_string

if TYPE_CHECKING:  # imported lazily: settings reads django_apps() before models can load
    from channels.base import Channel

CHANNELS: dict[str, str] = {
    "email": "channels.email.channel.EmailChannel",
    "slack": "channels.slack.channel.SlackChannel",
    "teams": "channels.teams.channel.TeamsChannel",
    "web": "portal.channel.WebChannel",
}


@cache
def channel(name: str) -> Channel:
    """The channel called `name`. Raises KeyError for a name that is not registered."""
    return import_string(CHANNELS[name])()


def django_apps() -> list[str]:
    """Channel folders with models of their own (an apps.py): settings adds them to INSTALLED_APPS.
    Found without importing them, so settings may call it before Django is set up."""
    return [name for name in (f"channels.{key}" for key in CHANNELS) if _has_apps_module(name)]


def _has_apps_module(package: str) -> bool:
    try:
        return importlib.util.find_spec(f"{package}.apps") is not None
    except ModuleNotFoundError:
        return False


def prefixed_channels() -> list[Channel]:
    """Channels whose approvers have addresses of their own form ("<prefix>:…")."""
    return [c for c in all_channels() if c.address_prefix]


def all_channels() -> list[Channel]:
    return [channel(name) for name in CHANNELS]


def names() -> list[str]:
    return list(CHANNELS)


def outcome_editing_names() -> list[str]:
    """Channels whose messages are edited to show the outcome once a decision settles."""
    return [c.name for c in all_channels() if c.edits_outcome]


def silent_names() -> list[str]:
    """Channels that send nothing (the web portal): no delivery is ever queued for them."""
    return [c.name for c in all_channels() if not c.sends]


def urlpatterns() -> list[URLPattern | URLResolver]:
    """Every channel's inbound endpoints, included at the root (their URLs are public contract)."""
    return [path("", include(c.urls)) for c in all_channels() if c.urls]


def install_senders() -> None:
    """Give the outbox a sender for each channel, found by the delivery's kind."""
    from channels.outbox import sender_for_channel
    from notifications.senders import register

    for name in CHANNELS:
        channel(name)  # imported now, so a channel's signal receivers are connected at start-up
        register(name)(sender_for_channel(name))
