"""Environment helpers that fail loudly.

A bad value stops start-up with a message naming the variable, instead of running with a
silently wrong setting. URL parsing is django-environ's; the strictness is ours.
"""

import math
import os
from urllib.parse import urlsplit

import environ
from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
_DATABASE_ENGINES = {"django.db.backends.sqlite3", "django.db.backends.postgresql"}
_EMAIL_ALIASES = {"console": "consolemail://", "locmem": "memorymail://"}


def _fail(name: str, raw: str, expected: str) -> ImproperlyConfigured:
    return ImproperlyConfigured(f"Environment variable {name}={raw!r} is invalid: {expected}.")


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise _fail(name, raw, "use 1/0, true/false, yes/no or on/off")


def env_choice(name: str, default: str, choices: set[str]) -> str:
    raw = os.environ.get(name)
    if raw is None:
        return default
    if raw.strip().lower() not in choices:
        raise _fail(name, raw, f"use one of {', '.join(sorted(choices))}")
    return raw.strip().lower()


def env_float(name: str, default: float, *, minimum: float = 0.0) -> float:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise _fail(name, raw, "expected a number") from None
    if not math.isfinite(value) or value < minimum:
        raise _fail(name, raw, f"expected a number >= {minimum}")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_url(name: str, default: str, *, schemes: set[str]) -> str:
    raw = os.environ.get(name, default)
    parts = urlsplit(raw)
    if parts.scheme not in schemes or not parts.netloc:
        raise _fail(name, raw, f"expected a URL with scheme {' or '.join(sorted(schemes))}")
    return raw.rstrip("/")


def env_database(name: str, default: str) -> dict:
    raw = os.environ.get(name, default)
    config = environ.Env.db_url_config(raw)
    if config.get("ENGINE") not in _DATABASE_ENGINES:
        raise _fail(name, raw, "expected postgres://user@host:port/name or sqlite:////path")
    return config


def env_email(name: str, default: str) -> dict:
    raw = os.environ.get(name, default)
    url = _EMAIL_ALIASES.get(raw, raw)
    if urlsplit(url).scheme not in environ.Env.EMAIL_SCHEMES:
        raise _fail(name, raw, "expected console, locmem, smtp://host:port or smtps://host:port")
    return environ.Env.email_url_config(url)


def env_cache(name: str, default: str) -> dict:
    raw = os.environ.get(name, default)
    try:
        return environ.Env.cache_url_config(raw)
    except Exception as exc:  # django-environ raises a mix of types for unknown schemes
        raise _fail(name, raw, "expected locmemcache:// or redis://host:port/db") from exc


def env_rate(name: str, default: str) -> str:
    """A DRF throttle rate such as '600/min'."""
    raw = os.environ.get(name, default)
    count, _, period = raw.partition("/")
    if not count.isdigit() or int(count) < 1 or period[:1] not in {"s", "m", "h", "d"}:
        raise _fail(name, raw, "expected a rate such as 600/min or 20/s")
    return raw
