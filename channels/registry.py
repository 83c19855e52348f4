"""The channels, by name. Adding one is a folder channels/<name>/ and one line in CHANNELS.

Entries are dotted paths, imported on first use, so decisions (which asks the registry which
channels exist) never imports a channel implementation itself.
"""

from functools import cache

from django.urls import URLPattern, URLResolver, include, path
from django.utils.module_loading import import_string

from channels.base import Channel

CHANNELS: dict[str, str] = {
    "email": "channels.email.channel.EmailChannel",
    "slack": "channels.slack.channel.SlackChannel",
}


@cache
def channel(name: str) -> Channel:
    """The channel called `name`. Raises KeyError for a name that is not registered."""
    return import_string(CHANNELS[name])()


def all_channels() -> list[Channel]:
    return [channel(name) for name in CHANNELS]


def names() -> list[str]:
    return list(CHANNELS)


def outcome_editing_names() -> list[str]:
    """Channels whose messages are edited to show the outcome once a decision settles."""
    return [c.name for c in all_channels() if c.edits_outcome]


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
