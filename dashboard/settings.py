"""Settings for tasktrail, read from the environment.

``TASKTRAIL_DATA_DIR`` (default: ``var/`` in a clone, ``~/.local/share/tasktrail`` once installed;
see ``dashboard.paths``), ``DATABASE_URL`` (default: a SQLite file in the data directory),
``TASKTRAIL_RECORDER_URL`` / ``REDIS_URL`` (the event stream's Redis; unset: none, and the web and
the monitor refuse to start), ``SECRET_KEY``, ``DEBUG``, ``ALLOWED_HOSTS``, and the ``TASKTRAIL_*``
options below. Loading the settings starts no server.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import secrets
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from dashboard import paths
from tasktrail.signing import SigningConfigError, parse_keys
from tasktrail.task_inputs import DEFAULT_SECRET_KEYS
from tracing.links import parse_viewer
from workers.embedded_redis import redis_url

BASE_DIR = paths.BASE_DIR
# Secret key file, SQLite database, collected static files: never inside site-packages.
DATA_DIR = paths.data_dir()
VAR_DIR = DATA_DIR  # the older name


def _data_dir_ready() -> Path:
    try:
        DATA_DIR.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ImproperlyConfigured(
            f"cannot create the data directory {DATA_DIR} ({exc.strerror}); "
            f"set {paths.DATA_DIR_VARIABLE} to a writable directory"
        ) from None
    return DATA_DIR


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def env_json(name: str) -> dict[str, object]:
    raw = os.environ.get(name) or "{}"
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ImproperlyConfigured(f"{name} must be a JSON object, got {type(value).__name__}")
    return value


def _secret_key() -> str:
    key = os.environ.get("SECRET_KEY")
    if key:
        return key
    # Kept in the data directory so sessions survive restarts; set SECRET_KEY in production.
    path = _data_dir_ready() / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = _secret_key()
DEBUG = env_bool("DEBUG", False)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_htmx",
    "django_celery_results",
    "axes",
    "dashboard",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "dashboard.timezones.ViewerTimeZoneMiddleware",  # after auth: a user's own zone comes first
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "dashboard.security.ContentSecurityPolicyMiddleware",
    "dashboard.middleware.PrivateNoStoreMiddleware",  # logged-in answers: Cache-Control no-store
    # Last: turns a login refused by the lockout into the "locked out" page (429).
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "dashboard.urls"
WSGI_APPLICATION = "dashboard.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [paths.resource_dir("templates")],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "dashboard.context_processors.alerts",  # the open-incidents banner
            ],
        },
    },
]

DATABASE_URL = os.environ.get("DATABASE_URL") or f"sqlite:///{DATA_DIR / 'tasktrail.sqlite3'}"
DATABASES = {
    "default": dj_database_url.parse(DATABASE_URL, conn_max_age=600, conn_health_checks=True)
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    _data_dir_ready()
    # Several processes (web, worker, monitor) share the file: wait for locks instead of failing,
    # and let readers run beside the writer. Tests use a file too, so worker processes can see it.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
    }
    # One file per test run, so two runs on one machine never share (and delete) each other's.
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / f"test-{os.getpid()}.sqlite3")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
# The lockout check runs before the password check (dashboard.security.LoginLockoutBackend).
AUTHENTICATION_BACKENDS = [
    "dashboard.security.LoginLockoutBackend",
    "django.contrib.auth.backends.ModelBackend",
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "overview"
LOGOUT_REDIRECT_URL = "login"

# -- security -------------------------------------------------------------------------------------
# Login lockout (django-axes): after TASKTRAIL_LOGIN_FAILURES failed logins for one username from
# one IP address, that pair is refused (429) for TASKTRAIL_LOGIN_LOCKOUT_MINUTES. Per pair, so
# someone guessing from one address cannot lock the user out everywhere. A success resets the
# count. Unlock early: `manage.py axes_reset_username NAME` (or the Access attempts admin).
AXES_FAILURE_LIMIT = int(os.environ.get("TASKTRAIL_LOGIN_FAILURES", "5"))
AXES_COOLOFF_TIME = dt.timedelta(
    minutes=int(os.environ.get("TASKTRAIL_LOGIN_LOCKOUT_MINUTES", "15"))
)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
# Password spraying (a few guesses at many usernames from one address): after this many failed
# logins or refused API tokens from one address, across usernames, within the cool-off, that
# address is refused too (dashboard.security; 0: off). Unlock early: `manage.py axes_reset_ip IP`.
TASKTRAIL_LOGIN_ADDRESS_FAILURES = int(os.environ.get("TASKTRAIL_LOGIN_ADDRESS_FAILURES", "20"))
# A refused attempt while locked out is not recorded: the rows stay bounded per address.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_USERNAME_CALLABLE = "dashboard.security.lockout_username"
AXES_VERBOSE = False
# Behind a reverse proxy REMOTE_ADDR is the proxy: AXES_CLIENT_IP_CALLABLE must then name a function
# that reads the client address the proxy sets.
AXES_CLIENT_IP_CALLABLE = os.environ.get("TASKTRAIL_CLIENT_IP_CALLABLE") or None

# Headers on every response (Django's defaults, stated): no framing, no MIME sniffing, the referrer
# only to this origin. The Content-Security-Policy is set by dashboard.security.
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = True  # htmx sends the token from the page (base.html), not the cookie

# Production over HTTPS: TASKTRAIL_HTTPS=true (with DEBUG false) makes cookies secure-only, sends
# HSTS and redirects plain HTTP. Behind a TLS-terminating proxy that sets X-Forwarded-Proto (and
# strips it from clients), also TASKTRAIL_PROXY_SSL_HEADER=true.
HTTPS = env_bool("TASKTRAIL_HTTPS", False)
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = HTTPS
SECURE_SSL_REDIRECT = HTTPS and env_bool("TASKTRAIL_SSL_REDIRECT", True)
SECURE_HSTS_SECONDS = int(os.environ.get("TASKTRAIL_HSTS_SECONDS", "31536000")) if HTTPS else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = HTTPS and env_bool("TASKTRAIL_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = HTTPS and env_bool("TASKTRAIL_HSTS_PRELOAD", False)
if env_bool("TASKTRAIL_PROXY_SSL_HEADER", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SILENCED_SYSTEM_CHECKS = [
    # HSTS preload is a commitment of the whole domain, made by its owner (TASKTRAIL_HSTS_PRELOAD).
    "security.W021",
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"
STATICFILES_DIRS = [paths.resource_dir("static")]
# Serve static files straight from the apps and static/ (no collectstatic step for a local run).
WHITENOISE_USE_FINDERS = True
# Files browsers ask for at the site's root (/favicon.ico), served as they are.
WHITENOISE_ROOT = paths.resource_dir("static") / "root"
# WhiteNoise warns about a missing STATIC_ROOT; a read-only data directory only costs the warning.
with contextlib.suppress(OSError):
    STATIC_ROOT.mkdir(parents=True, exist_ok=True)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "filters": {"scrub_secrets": {"()": "dashboard.log_filters.ScrubSecrets"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain"},
        # stderr, secret-looking values masked (the message and the traceback)
        "errors": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "filters": ["scrub_secrets"],
        },
    },
    "loggers": {
        "tasktrail": {"handlers": ["console"], "level": "INFO", "propagate": False},
        # A 500 with DEBUG off (Django logs it nowhere else without ADMINS): the path and traceback
        "django.request": {"handlers": ["errors"], "level": "ERROR", "propagate": False},
        # runserver's line per request; TASKTRAIL_REQUEST_LOG=false (the demo) keeps only errors,
        # so the pages' polling does not flood the output
        "django.server": {
            "handlers": ["console"],
            "level": "INFO" if env_bool("TASKTRAIL_REQUEST_LOG", True) else "WARNING",
            "propagate": False,
        },
    },
}

# -- Celery ---------------------------------------------------------------------------------------
# The Redis holding the event stream: the recorder writes it, the monitor reads it, the pages read
# queue depths beside it. TASKTRAIL_RECORDER_URL, else REDIS_URL, else the embedded Valkey when
# TASKTRAIL_EMBEDDED_REDIS=1 (the demo, the tests), else "": `monitor` and `tasktrail web` refuse to
# start without it; migrate, createuser, check and shell do not need it.
REDIS_URL = os.environ.get("TASKTRAIL_RECORDER_URL") or redis_url()
# The service's own Celery app (the demo's worker): REDIS_URL when set, else the stream's Redis.
CELERY_BROKER_URL = os.environ.get("REDIS_URL") or REDIS_URL
CELERY_RESULT_BACKEND = "django-db"
CELERY_RESULT_EXTENDED = True
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = {"workers.tasks.sync_inventory": {"queue": "inventory"}}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Celery's Django fix-up closes the database connection after every task unless this is set, which
# costs a new PostgreSQL connection per task (measured: django-celery-results at 0.24x plain
# Celery). Reuse the connection; Django's CONN_HEALTH_CHECKS replaces a broken one.
CELERY_DB_REUSE_MAX = int(os.environ.get("CELERY_DB_REUSE_MAX", "1000"))

# -- tasktrail -------------------------------------------------------------------------------------
TASKTRAIL_STREAM = os.environ.get("TASKTRAIL_STREAM", "tasktrail:events")
# The stream's length cap, which the task processes enforce (the client reads the same variable and
# tells the monitor its value); used here until they have. The monitor warns at half of it.
TASKTRAIL_STREAM_MAX_ENTRIES = int(os.environ.get("TASKTRAIL_STREAM_MAX_ENTRIES", "1000000"))
# Signed entries (tasktrail.signing): "id:secret" pairs, comma-separated, as on the workers. Set:
# the monitor dead-letters entries unsigned or signed with no key of these. Unset: not checked.
try:
    TASKTRAIL_EVENT_KEYS = parse_keys(os.environ.get("TASKTRAIL_EVENT_KEY", ""))
except SigningConfigError as exc:  # the message names the key id, never its secret
    raise ImproperlyConfigured(str(exc)) from None
# Where the recorder writes events: the stream's Redis (REDIS_URL above).
TASKTRAIL_RECORDER_URL = REDIS_URL
# The shop's broker, where retry, cancel and terminate go (REDIS_URL when set, else the stream's
# Redis), and its transport options as JSON, e.g. {"global_keyprefix": "shop:"}.
TASKTRAIL_BROKER_URL = os.environ.get("TASKTRAIL_BROKER_URL") or CELERY_BROKER_URL
TASKTRAIL_BROKER_TRANSPORT_OPTIONS = env_json("TASKTRAIL_BROKER_TRANSPORT_OPTIONS")
# Queues the Queues page and the alert checks always show, besides those the broker lists and
# those the task catalog, the workers and the recent rows name (comma-separated).
TASKTRAIL_QUEUES = env_list("TASKTRAIL_QUEUES", "")
# RabbitMQ's management API with its credentials, e.g. http://user:pass@host:15672/api/: adds
# unacknowledged messages, idle-since and the list of queues to what a passive declare gives.
TASKTRAIL_RABBITMQ_API = os.environ.get("TASKTRAIL_RABBITMQ_API", "")
# The shop's result backend (any Celery result backend URL) for the task page's result; unset:
# django-celery-results in this database, when the shop writes there.
TASKTRAIL_RESULT_BACKEND = os.environ.get("TASKTRAIL_RESULT_BACKEND", "")
# The shop's result_backend_transport_options as JSON, e.g. {"global_keyprefix": "shop:"}.
TASKTRAIL_RESULT_BACKEND_TRANSPORT_OPTIONS = env_json("TASKTRAIL_RESULT_BACKEND_TRANSPORT_OPTIONS")
# Retry trusts a worker's task catalog this long after the worker last reported it.
TASKTRAIL_CATALOG_MAX_AGE_SECONDS = float(
    os.environ.get("TASKTRAIL_CATALOG_MAX_AGE_SECONDS", str(7 * 24 * 3600))
)
# Which tasks an operator may retry: "catalog" (default) any task a recent worker reported, unless
# it sets tasktrail_retryable = False; "declared" only those that set tasktrail_retryable = True.
# Celery's own tasks (celery.*) never. Checked here so a typo stops the start-up.
TASKTRAIL_RETRY = (os.environ.get("TASKTRAIL_RETRY") or "catalog").strip().lower()
if TASKTRAIL_RETRY not in ("catalog", "declared"):
    raise ImproperlyConfigured(f"TASKTRAIL_RETRY={TASKTRAIL_RETRY[:50]!r}: use catalog or declared")
TASKTRAIL_MAX_ARGS_BYTES = int(os.environ.get("TASKTRAIL_MAX_ARGS_BYTES", str(64 * 1024)))
TASKTRAIL_REDACT_KEYS = env_list("TASKTRAIL_REDACT_KEYS", ",".join(DEFAULT_SECRET_KEYS))
# Trace viewer links (tracing/links.py): "<preset> <base URL>" or a URL template with {trace_id};
# empty: no links. Checked here so a bad value stops the start-up with the reason.
TASKTRAIL_TRACE_VIEWER = os.environ.get("TASKTRAIL_TRACE_VIEWER", "")
parse_viewer(TASKTRAIL_TRACE_VIEWER)
# Bulk actions touch at most this many tasks (admins: up to the hard cap).
TASKTRAIL_BULK_CAP = int(os.environ.get("TASKTRAIL_BULK_CAP", "1000"))
TASKTRAIL_BULK_HARD_CAP = int(os.environ.get("TASKTRAIL_BULK_HARD_CAP", "20000"))
# The Tasks list's CSV export stops after this many rows and says so in its last line.
TASKTRAIL_EXPORT_MAX_ROWS = int(os.environ.get("TASKTRAIL_EXPORT_MAX_ROWS", "100000"))

# -- alerts ---------------------------------------------------------------------------------------
# Stuck queues and tasks (dashboard/alerts): checked inside `manage.py monitor`, mailed with
# Django's email backend. See the README's "Alerts" section.
TASKTRAIL_ALERT_CHECK_SECONDS = float(os.environ.get("TASKTRAIL_ALERT_CHECK_SECONDS", "10"))
# Thresholds in seconds (0 turns a rule off); defaults in dashboard.alerts.rules.Thresholds. JSON in
# the environment, e.g. {"queue": {"oldest_seconds": 120}, "queues": {"reports": {...}},
# "tasks": {"workers.tasks.build_report": 900}, "remind_seconds": 3600}.
TASKTRAIL_ALERTS: dict[str, object] = json.loads(os.environ.get("TASKTRAIL_ALERTS") or "{}")
# A paused queue is not stuck; a "queue X still paused" incident opens once it has been paused this
# many seconds (0: never), and resolves when it is resumed.
TASKTRAIL_QUEUE_PAUSE_REMIND_SECONDS = float(
    os.environ.get("TASKTRAIL_QUEUE_PAUSE_REMIND_SECONDS", "3600")
)
# Who gets the mail: these addresses plus users with the "Receives alert emails" permission.
TASKTRAIL_ALERT_EMAILS = env_list("TASKTRAIL_ALERT_EMAILS", "")
# Links in the mail point here.
TASKTRAIL_BASE_URL = os.environ.get("TASKTRAIL_BASE_URL", "http://127.0.0.1:8000")
# API tokens expire this many days after they are created unless `--expires-days` says otherwise.
TASKTRAIL_API_TOKEN_DAYS = int(os.environ.get("TASKTRAIL_API_TOKEN_DAYS", "90"))
# /metrics answers only with `Authorization: Bearer <this token>`; unset, /metrics is off (404).
TASKTRAIL_METRICS_TOKEN = os.environ.get("TASKTRAIL_METRICS_TOKEN", "")

EMAIL_BACKEND = os.environ.get("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
EMAIL_HOST = os.environ.get("EMAIL_HOST", "localhost")
EMAIL_PORT = int(os.environ.get("EMAIL_PORT", "25"))
EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", False)
# The monitor sends mail in its loop: never wait on a mail server for long.
EMAIL_TIMEOUT = int(os.environ.get("EMAIL_TIMEOUT", "10"))
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "tasktrail@localhost")

# -- retention ------------------------------------------------------------------------------------
# What the monitor's pruning thread (and `manage.py prune`) removes; see the README's "Retention".
# Days; 0 keeps that kind of row forever. Anything else that is not a number of days >= 0 stops the
# start-up naming the variable.
from dashboard.retention.policy import parse_days, parse_seconds  # noqa: E402

# SUCCESS tasks, by finish time (their attempts and django-celery-results rows go with them).
TASKTRAIL_RETENTION_DAYS = parse_days(
    "TASKTRAIL_RETENTION_DAYS", os.environ.get("TASKTRAIL_RETENTION_DAYS"), 14
)
# FAILURE, REVOKED, REJECTED and LOST tasks: kept longer, for the post-mortem and the retry.
TASKTRAIL_RETENTION_FAILED_DAYS = parse_days(
    "TASKTRAIL_RETENTION_FAILED_DAYS", os.environ.get("TASKTRAIL_RETENTION_FAILED_DAYS"), 30
)
# A task that never finished is removed once this long has passed since its latest event and its
# ETA: no event for a month means its worker and its message are gone.
TASKTRAIL_UNFINISHED_GIVE_UP_DAYS = parse_days(
    "TASKTRAIL_UNFINISHED_GIVE_UP_DAYS", os.environ.get("TASKTRAIL_UNFINISHED_GIVE_UP_DAYS"), 30
)
# Operator actions (with the tasks they touched) and resolved incidents.
TASKTRAIL_AUDIT_RETENTION_DAYS = parse_days(
    "TASKTRAIL_AUDIT_RETENTION_DAYS", os.environ.get("TASKTRAIL_AUDIT_RETENTION_DAYS"), 400
)
# How often the monitor prunes (0: never; `manage.py prune` still works) and how long one pass may
# take before it stops and leaves the rest to the next.
TASKTRAIL_PRUNE_EVERY_SECONDS = parse_seconds(
    "TASKTRAIL_PRUNE_EVERY_SECONDS", os.environ.get("TASKTRAIL_PRUNE_EVERY_SECONDS"), 300
)
TASKTRAIL_PRUNE_PASS_SECONDS = parse_seconds(
    "TASKTRAIL_PRUNE_PASS_SECONDS", os.environ.get("TASKTRAIL_PRUNE_PASS_SECONDS"), 60
)
