"""Countersign settings: one module, read from the environment (the README lists them).

With nothing set, it runs on an embedded default: SQLite and a file-system Celery broker under
var/, and email printed to the console.
"""

import os
import secrets
import time
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

from kombu import Exchange, Queue

from broker.env import (
    env_bool,
    env_cache,
    env_choice,
    env_database,
    env_email,
    env_float,
    env_list,
    env_rate,
    env_str,
    env_url,
)
from channels import registry as channel_registry

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"
VAR_DIR.mkdir(exist_ok=True)

DEBUG = env_bool("DEBUG", False)


def _kept_in_var(name: str, generate) -> str:
    """A secret generated once and kept in var/<name> (one machine, development). Created with
    O_EXCL, so processes starting together (web, worker, beat) all end up with the same one."""
    path = VAR_DIR / name
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        for _ in range(50):  # another process is writing it: wait for its content
            if text := path.read_text().strip():
                return text
            time.sleep(0.02)
        raise
    with os.fdopen(descriptor, "w") as handle:
        handle.write(generate())
    return path.read_text().strip()


def _secret_key() -> str:
    """SECRET_KEY from the environment, else one generated once and kept in var/ (one machine)."""
    return env_str("SECRET_KEY") or _kept_in_var("secret_key", lambda: secrets.token_urlsafe(50))


SECRET_KEY = _secret_key()


def _audit_signing_key() -> str:
    """AUDIT_SIGNING_KEY from the environment, else one generated once and kept in var/ (one
    machine, development): the Ed25519 key that signs audit checkpoints (audit/signing.py)."""
    from audit.signing import new_private_key_text

    return env_str("AUDIT_SIGNING_KEY") or _kept_in_var("audit_signing_key", new_private_key_text)


AUDIT_SIGNING_KEY = _audit_signing_key()

PUBLIC_BASE_URL = env_url("PUBLIC_BASE_URL", "http://127.0.0.1:8000", schemes={"http", "https"})
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
if (public_host := urlsplit(PUBLIC_BASE_URL).hostname) and public_host not in ALLOWED_HOSTS:
    ALLOWED_HOSTS.append(public_host)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "servestatic.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "anymail",
    "organizations",
    "decisions",
    "notifications",
    "channels.apps.ChannelsConfig",
    "audit",
    *channel_registry.django_apps(),  # channels with models of their own (channels/<name>/apps.py)
    "portal",
]

MIDDLEWARE = [
    "broker.http.NotFoundInDebugMiddleware",
    "broker.http.BodySizeLimitMiddleware",
    "broker.http.DatabaseUnavailableMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Static files are served before Django is reached (broker/static_files.py).
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "broker.urls"
WSGI_APPLICATION = "broker.wsgi.application"
ASGI_APPLICATION = "broker.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        # Each channel keeps its templates in its own folder (channels/<name>/templates).
        "DIRS": [BASE_DIR / "templates", *sorted(BASE_DIR.glob("channels/*/templates"))],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# GET /metrics (Prometheus) answers only with this bearer token; unset, it is off (404).
METRICS_TOKEN = env_str("METRICS_TOKEN")

# PostgreSQL: the role the service runs as, when migrations run as another (the owner). Each
# `migrate` grants it INSERT/SELECT only on the audit tables (broker/db_roles.py).
DATABASE_APP_ROLE = env_str("DATABASE_APP_ROLE")
DATABASES = {"default": env_database("DATABASE_URL", f"sqlite:///{VAR_DIR / 'countersign.sqlite3'}")}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # IMMEDIATE takes the write lock at BEGIN, so concurrent writers queue instead of failing
    # with "database is locked" halfway through a transaction; WAL lets readers go on meanwhile.
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
else:
    # Requests run their sync code in many threads (the server's pool, the long-poll's reads,
    # a new thread per request under Django's ASGI handler): a pool shares a few connections
    # among them (persistent per-thread connections would pile up instead).
    DATABASES["default"]["OPTIONS"] = {
        "pool": {
            "min_size": 1,
            "max_size": int(env_float("DATABASE_POOL_SIZE", 10, minimum=1)),
            # How long a request waits for a connection before it answers 503 (Retry-After):
            # all of them busy, or PostgreSQL unreachable.
            "timeout": env_float("DATABASE_POOL_TIMEOUT", 5, minimum=0.1),
            # psycopg retries a failed connection with a growing backoff (1 s, 2 s, 4 s, …) for
            # this long, and meanwhile makes no other attempt: its default of 5 minutes would
            # leave requests failing for up to half an outage's length after PostgreSQL is back.
            # Given up soon, the next request starts a new attempt at once.
            "reconnect_timeout": 2,
        }
    }
    # The pool checks each connection before handing it out: after a restart or a failover
    # its idle connections are dead, and without the check a request would get one and fail.
    # broker.postgresql is Django's backend with a pool that drains itself when a check fails.
    DATABASES["default"]["ENGINE"] = "broker.postgresql"
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

CACHES = {"default": env_cache("CACHE_URL", "locmemcache://countersign")}

EMAIL = env_email("EMAIL_URL", "console")
EMAIL_BACKEND = EMAIL["EMAIL_BACKEND"]
EMAIL_HOST = EMAIL.get("EMAIL_HOST") or "localhost"
EMAIL_PORT = EMAIL.get("EMAIL_PORT") or 25
EMAIL_HOST_USER = EMAIL.get("EMAIL_HOST_USER") or ""
EMAIL_HOST_PASSWORD = EMAIL.get("EMAIL_HOST_PASSWORD") or ""
EMAIL_USE_TLS = bool(EMAIL.get("EMAIL_USE_TLS"))
EMAIL_USE_SSL = bool(EMAIL.get("EMAIL_USE_SSL"))
EMAIL_TIMEOUT = 20
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "Countersign <countersign@localhost>")
if env_str("EMAIL_BACKEND"):
    # A django-anymail provider, e.g. anymail.backends.postmark.EmailBackend, configured by
    # its own ANYMAIL_* variables.
    EMAIL_BACKEND = env_str("EMAIL_BACKEND")
if DEBUG:
    # Keep a copy of every email for /dev/outbox/, and still send it as configured.
    DEV_OUTBOX_BACKEND, EMAIL_BACKEND = EMAIL_BACKEND, "notifications.dev_outbox.DevOutboxBackend"
ANYMAIL = {
    key.removeprefix("ANYMAIL_"): value for key, value in os.environ.items() if key.startswith("ANYMAIL_")
}

SLACK_BOT_TOKEN = env_str("SLACK_BOT_TOKEN")
SLACK_SIGNING_SECRET = env_str("SLACK_SIGNING_SECRET")
SLACK_API_URL = env_url("SLACK_API_URL", "https://slack.com/api", schemes={"http", "https"}) + "/"
CALLBACK_ALLOW_PRIVATE = env_bool("CALLBACK_ALLOW_PRIVATE", False)

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True
# The admin shows times as "2 Dec 2026, 14:03 UTC": 24-hour and with their zone.
FORMAT_MODULE_PATH = ["broker.formats"]

# The approver portal (/inbox): sessions from a magic link, never a password. The cookie is
# HttpOnly and SameSite=Lax (Django's defaults), Secure whenever the service is served over https.
SESSION_COOKIE_AGE = 14 * 24 * 3600
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = PUBLIC_BASE_URL.startswith("https://")
PORTAL_SIGN_IN_LINK_MINUTES = 15
# A session this young answers decisions whose verification is `session` (signed in by a fresh link).
PORTAL_FRESH_SIGN_IN_MINUTES = 15
# Sign-in emails asked for, per address and per client IP (the same for known and unknown addresses).
PORTAL_SIGN_IN_RATE_LIMIT = env_rate("PORTAL_SIGN_IN_RATE_LIMIT", "5/hour")
PORTAL_SIGN_IN_IP_RATE_LIMIT = env_rate("PORTAL_SIGN_IN_IP_RATE_LIMIT", "30/hour")

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)

# Request bodies: anything larger is a 413, chunked or not (broker.asgi_body, broker.http).
MAX_REQUEST_BODY_BYTES = 1024 * 1024
# Threads per web process serving the API and pages (broker/asgi.py): more than the database
# pool has connections would only queue for one.
WEB_THREADS = int(env_float("WEB_THREADS", 10, minimum=1))
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_REQUEST_BODY_BYTES

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["organizations.auth.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["organizations.auth.HasDecisionsScope"],
    "DEFAULT_THROTTLE_CLASSES": ["organizations.auth.ApiKeyRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {"api_key": env_rate("API_RATE_LIMIT", "600/min")},
    "DEFAULT_PARSER_CLASSES": ["broker.http.StrictJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "EXCEPTION_HANDLER": "broker.errors.api_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Countersign API",
    "DESCRIPTION": (
        "Human approval for AI agents: ask a person to sign off by email or Slack, wait (by '?wait=' "
        "long-poll or a signed callback), and audit it. The full reference, with approver flows and "
        "callbacks, is docs/API.md in the repository."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_AUTHENTICATION": [],
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
}

# Celery. The default broker needs no server: kombu's file-system transport under var/.
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "filesystem://localhost//")
if CELERY_BROKER_URL.startswith("filesystem://"):
    _queue_dir = VAR_DIR / "celery" / "queue"
    _control_dir = VAR_DIR / "celery" / "control"
    for _folder in (_queue_dir, _control_dir):
        _folder.mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {
        "data_folder_in": str(_queue_dir),
        "data_folder_out": str(_queue_dir),
        "control_folder": str(_control_dir),
    }
elif CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    CELERY_BROKER_TRANSPORT_OPTIONS = {"socket_timeout": 5, "socket_connect_timeout": 2}
    # kombu's Redis transport, minus a new Redis client per publish (see the module).
    CELERY_BROKER_TRANSPORT = "broker.redis_transport:Transport"
CELERY_TASK_IGNORE_RESULT = True
# A task is acknowledged only once it has run, and a killed worker's task goes back to the
# queue: tasks are idempotent (they claim their row by compare-and-set), so a rerun is safe.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Publishing happens after commit from web requests: fail fast when the broker is down, the
# outbox sweep re-enqueues whatever was not published.
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2}
CELERY_TIMEZONE = "UTC"
# The clock has a queue of its own: a backlog of emails must not make deadlines late. A worker
# consumes every queue declared here in turn (a tick waits for one task at most); run one
# with `-Q clock` to give the clock a worker to itself.
# Routing keys spelled out: a Queue without one is bound with the default key, and then
# every task would be copied into both queues.
CELERY_TASK_QUEUES = [
    Queue("celery", Exchange("celery", type="direct"), routing_key="celery"),
    Queue("clock", Exchange("celery", type="direct"), routing_key="clock"),
]
CELERY_TASK_DEFAULT_QUEUE = "celery"
CELERY_TASK_ROUTES = {"decisions.clock_tick": {"queue": "clock"}, "audit.seal": {"queue": "clock"}}
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")

OUTBOX_SWEEP_SECONDS = env_float("OUTBOX_SWEEP_SECONDS", 5, minimum=0.1)
# A pending delivery not claimed this long after it became due is enqueued again.
OUTBOX_REQUEUE_AFTER = timedelta(seconds=env_float("OUTBOX_REQUEUE_AFTER_SECONDS", 30, minimum=1))
# A claimed delivery whose worker died is free for another worker after this lease.
OUTBOX_LEASE = timedelta(seconds=env_float("OUTBOX_LEASE_SECONDS", 120, minimum=1))

# Long-poll wake-ups ride on Redis pub/sub when the broker is Redis; a batched database
# re-check covers lost announcements, and is all there is on the embedded default.
LONGPOLL_REDIS_URL = CELERY_BROKER_URL if CELERY_BROKER_URL.startswith(("redis://", "rediss://")) else ""
LONGPOLL_RECHECK_SECONDS = env_float(
    "LONGPOLL_RECHECK_SECONDS", 2.0 if LONGPOLL_REDIS_URL else 0.5, minimum=0.05
)

CLOCK_TICK_SECONDS = env_float("CLOCK_TICK_SECONDS", 1.0, minimum=0.1)

# The audit sealer (audit/sealing.py) links committed events into their chains and signs
# checkpoints; events are sealed within about two of its periods.
AUDIT_SEAL_SECONDS = env_float("AUDIT_SEAL_SECONDS", 1.0, minimum=0.1)
# An event still unsealed this long after it was written is reported by verify_audit.
AUDIT_SEAL_GRACE = timedelta(seconds=env_float("AUDIT_SEAL_GRACE_SECONDS", 60, minimum=1))
# Where checkpoints go besides the database: a directory (or any Django storage backend,
# e.g. storages.backends.s3.S3Storage with its AWS_* settings) and/or a compliance webhook.
AUDIT_CHECKPOINT_DIR = env_str("AUDIT_CHECKPOINT_DIR", str(VAR_DIR / "checkpoints"))
AUDIT_CHECKPOINT_STORAGE = env_str("AUDIT_CHECKPOINT_STORAGE", "django.core.files.storage.FileSystemStorage")
AUDIT_CHECKPOINT_STORAGE_ENABLED = bool(AUDIT_CHECKPOINT_DIR) or not AUDIT_CHECKPOINT_STORAGE.endswith(
    "FileSystemStorage"
)
_CHECKPOINT_STORAGE_OPTIONS = (
    {"location": AUDIT_CHECKPOINT_DIR} if AUDIT_CHECKPOINT_STORAGE.endswith("FileSystemStorage") else {}
)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    "audit_checkpoints": {
        "BACKEND": AUDIT_CHECKPOINT_STORAGE,
        "OPTIONS": _CHECKPOINT_STORAGE_OPTIONS,
    },
}
AUDIT_CHECKPOINT_WEBHOOK_URL = env_str("AUDIT_CHECKPOINT_WEBHOOK_URL")
AUDIT_CHECKPOINT_WEBHOOK_SECRET = env_str("AUDIT_CHECKPOINT_WEBHOOK_SECRET")
if AUDIT_CHECKPOINT_WEBHOOK_URL and not AUDIT_CHECKPOINT_WEBHOOK_SECRET.startswith("whsec_"):
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured("AUDIT_CHECKPOINT_WEBHOOK_URL needs AUDIT_CHECKPOINT_WEBHOOK_SECRET=whsec_…")

CELERY_BEAT_SCHEDULE = {
    "outbox-sweep": {"task": "notifications.sweep_outbox", "schedule": OUTBOX_SWEEP_SECONDS},
    # Reminders, escalations and deadlines. A tick still queued when the next is due is
    # dropped (expires): ticks are interchangeable, and a backlog of them would only repeat work.
    "clock": {
        "task": "decisions.clock_tick",
        "schedule": CLOCK_TICK_SECONDS,
        "options": {"expires": max(CLOCK_TICK_SECONDS * 5, 5)},
    },
    "audit-seal": {
        "task": "audit.seal",
        "schedule": AUDIT_SEAL_SECONDS,
        "options": {"expires": max(AUDIT_SEAL_SECONDS * 5, 5)},
    },
    # Sinks that were down catch up (each seal also publishes right after it commits).
    "audit-publish-checkpoints": {"task": "audit.publish_checkpoints", "schedule": 30.0},
}

# LOG_FORMAT=json: one JSON object per line (time, level, logger, message, and any `extra`
# fields), for a log pipeline; plain text otherwise, for people.
LOG_FORMAT = env_choice("LOG_FORMAT", "text", {"text", "json"})
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "text": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
            "timestamp": False,
        },
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
}
