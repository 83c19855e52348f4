"""Settings read the environment through helpers that fail loudly: a bad value stops start-up
with a message naming the variable, instead of running with a silently wrong setting."""

import json
import os
import subprocess
import sys

import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from broker.env import env_bool, env_database, env_email, env_float, env_rate, env_url
from tests.helpers import django_process

WEB = {"http", "https"}


@pytest.mark.parametrize("raw", ["maybe", "2", "enabled"])
def test_env_bool_refuses_anything_but_a_clear_yes_or_no(monkeypatch, raw):
    monkeypatch.setenv("CALLBACK_ALLOW_PRIVATE", raw)

    with pytest.raises(ImproperlyConfigured, match="CALLBACK_ALLOW_PRIVATE"):
        env_bool("CALLBACK_ALLOW_PRIVATE", False)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("1", True), ("true", True), ("Yes", True), (" on ", True), ("0", False), ("off", False), ("", False)],
)
def test_env_bool_parses_the_usual_spellings(monkeypatch, raw, expected):
    monkeypatch.setenv("CALLBACK_ALLOW_PRIVATE", raw)

    assert env_bool("CALLBACK_ALLOW_PRIVATE", not expected) is expected


def test_env_bool_falls_back_to_its_default_when_unset(monkeypatch):
    monkeypatch.delenv("CALLBACK_ALLOW_PRIVATE", raising=False)

    assert env_bool("CALLBACK_ALLOW_PRIVATE", True) is True


@pytest.mark.parametrize("raw", ["abc", "-1", "nan", "inf", ""])
def test_env_float_refuses_non_numbers_negatives_and_non_finite_values(monkeypatch, raw):
    monkeypatch.setenv("OUTBOX_LEASE_SECONDS", raw)

    with pytest.raises(ImproperlyConfigured, match="OUTBOX_LEASE_SECONDS"):
        env_float("OUTBOX_LEASE_SECONDS", 120, minimum=1)


def test_env_float_refuses_a_value_below_its_minimum(monkeypatch):
    # WHY: a sweep every 0 seconds would spin; the setting has a floor.
    monkeypatch.setenv("OUTBOX_SWEEP_SECONDS", "0.01")

    with pytest.raises(ImproperlyConfigured, match="OUTBOX_SWEEP_SECONDS"):
        env_float("OUTBOX_SWEEP_SECONDS", 5, minimum=0.1)


def test_env_float_parses_a_number_and_defaults_when_unset(monkeypatch):
    monkeypatch.setenv("OUTBOX_LEASE_SECONDS", "2.5")
    assert env_float("OUTBOX_LEASE_SECONDS", 120, minimum=1) == 2.5

    monkeypatch.delenv("OUTBOX_LEASE_SECONDS")
    assert env_float("OUTBOX_LEASE_SECONDS", 120, minimum=1) == 120


@pytest.mark.parametrize("raw", ["ftp://x", "nohost", "https://", "approvals.example.com"])
def test_env_url_refuses_other_schemes_and_urls_without_a_host(monkeypatch, raw):
    monkeypatch.setenv("PUBLIC_BASE_URL", raw)

    with pytest.raises(ImproperlyConfigured, match="PUBLIC_BASE_URL"):
        env_url("PUBLIC_BASE_URL", "http://127.0.0.1:8000", schemes=WEB)


def test_env_url_parses_a_web_url_without_its_trailing_slash(monkeypatch):
    # WHY: links are built as PUBLIC_BASE_URL + "/a/<token>"; a trailing slash would double it.
    monkeypatch.setenv("PUBLIC_BASE_URL", "https://approvals.example.com/")

    assert env_url("PUBLIC_BASE_URL", "http://127.0.0.1:8000", schemes=WEB) == "https://approvals.example.com"


@pytest.mark.parametrize("raw", ["mysql://cs:secret@db.internal:3306/countersign", "oracle://cs@db/xe"])
def test_env_database_refuses_engines_we_do_not_support(monkeypatch, raw):
    monkeypatch.setenv("DATABASE_URL", raw)

    with pytest.raises(ImproperlyConfigured, match="DATABASE_URL"):
        env_database("DATABASE_URL", "sqlite:////srv/countersign/db.sqlite3")


def test_env_database_parses_a_postgres_url(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgres://cs:secret@db.internal:5432/countersign")

    config = env_database("DATABASE_URL", "sqlite:////srv/countersign/db.sqlite3")

    assert config["ENGINE"] == "django.db.backends.postgresql"
    assert config["NAME"] == "countersign"
    assert config["HOST"] == "db.internal"
    assert config["PORT"] == 5432
    assert config["USER"] == "cs"
    assert config["PASSWORD"] == "secret"


def test_env_database_defaults_to_sqlite(monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)

    config = env_database("DATABASE_URL", "sqlite:////srv/countersign/db.sqlite3")

    assert config["ENGINE"] == "django.db.backends.sqlite3"
    assert config["NAME"] == "/srv/countersign/db.sqlite3"


@pytest.mark.parametrize("raw", ["carrier-pigeon://x", "sendgrid", "mailto:ops@example.com"])
def test_env_email_refuses_unknown_transports(monkeypatch, raw):
    monkeypatch.setenv("EMAIL_URL", raw)

    with pytest.raises(ImproperlyConfigured, match="EMAIL_URL"):
        env_email("EMAIL_URL", "console")


@pytest.mark.parametrize(
    ("raw", "backend"),
    [
        ("console", "django.core.mail.backends.console.EmailBackend"),
        ("locmem", "django.core.mail.backends.locmem.EmailBackend"),
        ("smtp://mail.example.com:587", "django.core.mail.backends.smtp.EmailBackend"),
    ],
)
def test_env_email_parses_the_aliases_and_smtp(monkeypatch, raw, backend):
    monkeypatch.setenv("EMAIL_URL", raw)

    assert env_email("EMAIL_URL", "console")["EMAIL_BACKEND"] == backend


def test_env_email_smtp_url_carries_host_and_port(monkeypatch):
    monkeypatch.setenv("EMAIL_URL", "smtp://mailer:secret@mail.example.com:587")

    config = env_email("EMAIL_URL", "console")

    assert config["EMAIL_HOST"] == "mail.example.com"
    assert config["EMAIL_PORT"] == 587
    assert config["EMAIL_HOST_USER"] == "mailer"


@pytest.mark.parametrize("raw", ["lots", "0/min", "600", "600/fortnight", "-5/s", "/min"])
def test_env_rate_refuses_anything_but_a_count_per_period(monkeypatch, raw):
    monkeypatch.setenv("API_RATE_LIMIT", raw)

    with pytest.raises(ImproperlyConfigured, match="API_RATE_LIMIT"):
        env_rate("API_RATE_LIMIT", "600/min")


@pytest.mark.parametrize("raw", ["600/min", "20/s", "1000/hour", "5/day"])
def test_env_rate_accepts_a_drf_throttle_rate(monkeypatch, raw):
    monkeypatch.setenv("API_RATE_LIMIT", raw)

    assert env_rate("API_RATE_LIMIT", "600/min") == raw


def test_the_error_shows_the_bad_value_so_the_operator_can_find_it(monkeypatch):
    monkeypatch.setenv("DEBUG", "maybe")

    with pytest.raises(ImproperlyConfigured) as raised:
        env_bool("DEBUG", False)

    assert "DEBUG='maybe'" in str(raised.value)


def test_a_bad_setting_stops_start_up_naming_the_variable():
    # given: an operator's typo in the environment
    environment = {**os.environ, "DJANGO_SETTINGS_MODULE": "broker.settings", "DEBUG": "maybe"}

    # when: the process starts Django, as manage.py, gunicorn and celery all do
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=settings.BASE_DIR,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    # then: it refuses to start, and says which variable is wrong
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "DEBUG" in result.stderr
    assert "maybe" in result.stderr


def _log_line(**environment) -> subprocess.CompletedProcess:
    """One warning logged by a process that starts Django with this environment."""
    code = (
        "import django, logging; django.setup(); "
        "logging.getLogger('countersign.test').warning('sealed %s events', 3, extra={'organization': 7})"
    )
    return django_process(code, **environment)


def test_log_format_json_writes_one_json_object_per_line_with_the_extra_fields():
    result = _log_line(LOG_FORMAT="json")

    assert result.returncode == 0, result.stderr
    (line,) = [line for line in result.stderr.splitlines() if "countersign.test" in line]
    record = json.loads(line)
    assert record["level"] == "WARNING"
    assert record["logger"] == "countersign.test"
    assert record["message"] == "sealed 3 events"
    assert record["organization"] == 7
    assert record["time"]


def test_logs_are_plain_text_by_default_and_a_bad_log_format_stops_start_up():
    plain = _log_line()
    bad = _log_line(LOG_FORMAT="xml")

    assert "WARNING countersign.test: sealed 3 events" in plain.stderr
    assert bad.returncode != 0
    assert "LOG_FORMAT='xml'" in bad.stderr
