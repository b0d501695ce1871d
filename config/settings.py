"""Settings for the CRM, read from the environment (django-environ) and an optional `.env`.

DJANGO_ENV selects the mode: ``development`` (default), ``test`` or ``production``. Production refuses to
start when a secret is missing or a default is unsafe; development and test use fixed, clearly marked
development keys so that a fresh checkout runs with no set-up.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import os
import warnings
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

from config.redis_url import app_redis_url

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# A `.env` beside manage.py is read when present; real environment variables win.
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)
# Written by `./dev` when it started the embedded PostgreSQL/Redis (see config/embedded.py).
environ.Env.read_env(BASE_DIR / ".data" / "embedded.env", overwrite=False)

DJANGO_ENV = env.str("DJANGO_ENV", default="development")
if DJANGO_ENV not in {"development", "test", "production"}:
    raise ImproperlyConfigured(f"DJANGO_ENV must be development, test or production, not {DJANGO_ENV!r}")
PRODUCTION = DJANGO_ENV == "production"

# Development-only secrets. Never used in production: `_secret()` refuses them there.
_DEV_SECRETS = {
    "SECRET_KEY": "dev-insecure-secret-key-do-not-use-in-production-0123456789abcdef",
    # Field keys (urlsafe base64 of 32 bytes, the format of Fernet.generate_key()); newest first.
    "FIELD_ENCRYPTION_KEYS": "ZGV2LWZpZWxkLWtleS0yLW5vdC1mb3ItcHJvZHVjdGk=,"
    "ZGV2LWZpZWxkLWtleS0xLW5vdC1mb3ItcHJvZHVjdGk=",
    "BLIND_INDEX_KEY": "dev-blind-index-key-not-for-production-use-0123456789",
    "AUDIT_CHAIN_KEY": "dev-audit-chain-key-not-for-production-use-0123456789",
}
# Every development value on its own, so that a production setting reusing any one of them (a single dev
# Fernet key, the dev index key given as the audit key, …) is refused too.
_DEV_VALUES = {part.strip() for value in _DEV_SECRETS.values() for part in (value, *value.split(","))}
_MIN_KEY_LENGTH = 32  # characters of the HMAC keys in production (`manage.py generate_keys` gives 43)


def _secret(name: str) -> str:
    """A secret from the environment. No default in production; `$`-references are not interpolated."""
    # Read os.environ directly: django-environ treats a value starting with `$` as a reference to another
    # variable and, with a default, silently falls back to it (see pitfalls: django-environ).
    raw = os.environ.get(name, "").strip()
    if raw:
        if PRODUCTION and any(part.strip() in _DEV_VALUES for part in (raw, *raw.split(","))):
            raise ImproperlyConfigured(
                f"{name} reuses a development value; set a real secret in production "
                "(`manage.py generate_keys` prints fresh ones)."
            )
        return raw
    if PRODUCTION:
        raise ImproperlyConfigured(
            f"{name} must be set in production (see .env.example; `manage.py generate_keys` prints one)."
        )
    return _DEV_SECRETS[name]


def _is_fernet_key(value: str) -> bool:
    try:
        return len(base64.urlsafe_b64decode(value.encode("ascii"))) == 32 and len(value) == 44
    except (ValueError, binascii.Error):
        return False


SECRET_KEY = _secret("SECRET_KEY")
# Old SECRET_KEYs still accepted for signatures (sessions, password-reset links) while rotating it.
SECRET_KEY_FALLBACKS = [k.strip() for k in os.environ.get("SECRET_KEY_FALLBACKS", "").split(",") if k.strip()]
# Newest first: the first key encrypts, all of them decrypt; `manage.py rotate_keys` moves data to the first.
FIELD_ENCRYPTION_KEYS = [k.strip() for k in _secret("FIELD_ENCRYPTION_KEYS").split(",") if k.strip()]
BLIND_INDEX_KEY = _secret("BLIND_INDEX_KEY")
# Refuse field tokens not bound to their column (format 0x02, Fernet; crm.crypto). Off until
# `manage.py rotate_keys --dry-run` counts 0 unbound tokens: turned on earlier, those rows stop reading.
FIELD_TOKENS_REQUIRE_BOUND = env.bool("FIELD_TOKENS_REQUIRE_BOUND", default=False)
AUDIT_CHAIN_KEY = _secret("AUDIT_CHAIN_KEY")
if not FIELD_ENCRYPTION_KEYS or not all(_is_fernet_key(k) for k in FIELD_ENCRYPTION_KEYS):
    # The key itself is never put in the message.
    raise ImproperlyConfigured(
        "FIELD_ENCRYPTION_KEYS must be a comma-separated list of Fernet keys (44 characters of url-safe "
        "base64 for 32 bytes), newest first; `manage.py generate_keys` prints one."
    )
if PRODUCTION:
    if len(SECRET_KEY) < 50 or SECRET_KEY.startswith("django-insecure-") or len(set(SECRET_KEY)) < 5:
        raise ImproperlyConfigured(
            "SECRET_KEY must be at least 50 random characters in production (`manage.py generate_keys`)."
        )
    for _name, _value in (("BLIND_INDEX_KEY", BLIND_INDEX_KEY), ("AUDIT_CHAIN_KEY", AUDIT_CHAIN_KEY)):
        if len(_value) < _MIN_KEY_LENGTH:
            raise ImproperlyConfigured(
                f"{_name} must be at least {_MIN_KEY_LENGTH} random characters in production "
                "(`manage.py generate_keys`)."
            )
    if any(k in _DEV_VALUES for k in SECRET_KEY_FALLBACKS):
        raise ImproperlyConfigured("SECRET_KEY_FALLBACKS reuses a development value.")
    _all_keys = [SECRET_KEY, BLIND_INDEX_KEY, AUDIT_CHAIN_KEY, *FIELD_ENCRYPTION_KEYS]
    if len(set(_all_keys)) != len(_all_keys):
        raise ImproperlyConfigured("SECRET_KEY, the encryption keys and the index keys must all differ.")

DEBUG = env.bool("DEBUG", default=not PRODUCTION)
if PRODUCTION and DEBUG:
    raise ImproperlyConfigured("DEBUG must be off in production.")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=[] if PRODUCTION else ["localhost", "127.0.0.1", "[::1]"])
if PRODUCTION and (not ALLOWED_HOSTS or "*" in ALLOWED_HOSTS):
    raise ImproperlyConfigured("ALLOWED_HOSTS must list the real host names in production (no '*').")
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "config.admin_site.CrmAdminConfig",  # django.contrib.admin, without the sidebar (config/admin_site.py)
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "guardian",
    "auditlog",
    # Before crm: its failed-login receiver runs first and marks a locked-out request (crm.signin.receivers).
    "crm.signin.apps.SigninLockoutConfig",  # django-axes, with a translatable name
    "django_otp",
    "crm.signin.apps.SecondFactorTotpConfig",  # django_otp.plugins.otp_totp, with a translatable name
    "django_otp.plugins.otp_static",
    "csp",
    "django_celery_beat",
    "ninja",  # serves the API docs' Swagger UI from our static files, not from a CDN
    "crm",
    "consent",
    "incidents",
]

# The *WebOnly classes are Django's (and WhiteNoise's) own middleware, skipped for the token-authenticated
# integration API under /api/, which has no session, cookie or static file (config/middleware.py).
MIDDLEWARE = [
    # First: sees every answer, including Django's own 404/500 pages, to give the API's its JSON shape.
    "config.api_errors.ApiErrorsAsJson",
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "config.middleware.WhiteNoiseWebOnly",
    "config.middleware.SessionWebOnly",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "config.middleware.AuthenticationWebOnly",
    "config.middleware.OTPWebOnly",  # request.user.is_verified() (django-otp)
    "config.middleware.MessagesWebOnly",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # django-auditlog's, recording the client address as the lockout counts it (not made-up X-Forwarded-For).
    "crm.signin.middleware.AuditlogTrustedAddressMiddleware",
    # After the audit context: a sign-out by idle timeout is recorded with the request's address.
    "crm.signin.middleware.AdminIdleTimeoutMiddleware",
    "crm.signin.middleware.SecondFactorRequiredMiddleware",
    # Last: turns a locked-out sign-in into the lockout page (django-axes).
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "django.template.context_processors.i18n",
            ],
        },
    },
]

# PostgreSQL is the only engine. `./dev` starts an embedded one when DATABASE_URL is unset.
# An empty value counts as unset (django-environ would turn "" into a configuration without an ENGINE).
_database_url = env.str("DATABASE_URL", default="").strip()
if not _database_url:
    raise ImproperlyConfigured(
        "DATABASE_URL is not set. Start the CRM with `./dev up` (it starts an embedded PostgreSQL) "
        "or point DATABASE_URL at PostgreSQL, e.g. postgres://user@127.0.0.1:5432/crm."
    )
DATABASES = {"default": env.db_url_config(_database_url)}
if DATABASES["default"].get("ENGINE") != "django.db.backends.postgresql":
    raise ImproperlyConfigured("Only PostgreSQL is supported (DATABASE_URL must be postgres://…).")
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
# Django's own switch (5.0+): parameters bound on the server, so a statement's text is the same on every call
# and psycopg prepares it after `prepare_threshold` runs (5); PostgreSQL then plans the hot statements once
# per connection instead of on every request (the permission gate's subquery took 0.5 ms to plan on each
# consent write; bench/README.md "consent writes"). Behind PgBouncer, 1.21+ with max_prepared_statements.
_prepare_threshold = env.int("DB_PREPARE_THRESHOLD", default=5)
DATABASES["default"].setdefault("OPTIONS", {}).update(
    server_side_binding=env.bool("DB_SERVER_SIDE_BINDING", default=True),
    # psycopg's automatic preparation, which Django leaves off (None) unless asked: after this many runs of
    # the same statement on a connection; 0 turns it off.
    prepare_threshold=_prepare_threshold if _prepare_threshold > 0 else None,
)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
if DJANGO_ENV == "test":
    # Hashing cost is not what the tests examine; keep Argon2 as the production hasher.
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher", *PASSWORD_HASHERS]

AUTHENTICATION_BACKENDS = [
    # First: refuses a locked-out username or address before any password is checked (django-axes).
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
    "guardian.backends.ObjectPermissionBackend",
]
GUARDIAN_RAISE_403 = True

# Sign-in lockout (django-axes, crm/signin): after AXES_FAILURE_LIMIT failures within the cool-off period,
# from one address or for one login name, sign-in is refused until the period has passed or the security role
# removes the record in the admin (「アクセス試行」). Every attempt is in the audit trail (crm.signin), so
# axes keeps no log of its own; a name that is no account is kept only as a keyed hash (crm.signin.identity).
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = dt.timedelta(minutes=env.int("AXES_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_USERNAME_CALLABLE = "crm.signin.identity.axes_username"
AXES_CLIENT_IP_CALLABLE = "crm.signin.identity.client_address"
# Reverse proxies in front of the web server that append the client's address to X-Forwarded-For (0: none,
# the connection's address counts). Behind a proxy, leaving it 0 would count every sign-in as the proxy's.
TRUSTED_PROXY_HOPS = env.int("TRUSTED_PROXY_HOPS", default=0)
AXES_DISABLE_ACCESS_LOG = True
AXES_LOCKOUT_TEMPLATE = "admin/signin/locked_out.html"
AXES_VERBOSE = False  # its log lines carry the login name and address
AXES_ENABLE_ADMIN = False  # crm.signin.admin registers its list, unlocking through the audited service
OTP_ADMIN_HIDE_SENSITIVE_DATA = True

# Second factor (django-otp, crm/signin): required for whoever sees personal data in clear or can erase
# (crm.signin.selectors.second_factor_required); enrolment at the first sign-in. OTP_DEV_BYPASS skips it for
# the demo logins of `./dev up`; refused in production.
OTP_TOTP_ISSUER = env.str("OTP_TOTP_ISSUER", default="CRM")
OTP_DEV_BYPASS = env.bool("OTP_DEV_BYPASS", default=False)
if PRODUCTION and OTP_DEV_BYPASS:
    raise ImproperlyConfigured("OTP_DEV_BYPASS is for development only and is refused in production.")
# Admin sessions end after this many minutes without a request (crm.signin.middleware).
ADMIN_IDLE_TIMEOUT_MINUTES = env.int("ADMIN_IDLE_TIMEOUT_MINUTES", default=30)
ANONYMOUS_USER_NAME = None  # no anonymous user row: nobody unauthenticated holds a permission

LANGUAGE_CODE = "ja"
LANGUAGES = [("ja", "日本語"), ("en", "English")]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = "Asia/Tokyo"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
# Only when present: a missing directory is a staticfiles warning, and `check --deploy --fail-level WARNING`
# must pass on a checkout that has no static files of its own yet.
STATICFILES_DIRS = [d for d in [BASE_DIR / "static"] if d.is_dir()]
if not PRODUCTION:
    # Development and tests serve static files through the finders (WhiteNoise's default under DEBUG) and
    # never run collectstatic, so the missing STATIC_ROOT is expected there; in production it means
    # collectstatic was forgotten, and WhiteNoise's warning stays.
    warnings.filterwarnings("ignore", message="No directory at: ", category=UserWarning)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if PRODUCTION
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

# Audit log: JSON changes, personal values redacted by the classification registry (crm.classification).
AUDITLOG_LOGENTRY_MODEL = "crm.AuditEntry"
AUDITLOG_STORE_JSON_CHANGES = True
AUDITLOG_MASK_CALLABLE = "crm.classification.audit_mask"
# The audit chain is sealed by one dedicated process (`manage.py audit_sealer`, crm/audit/sealing.py): it
# looks for pending entries every AUDIT_SEAL_INTERVAL seconds. AUDIT_SEAL_ON_COMMIT also seals right after
# each commit in the writing process (the tests' mode: a test reads the chain right after its write, with no
# sealer process beside it); web and worker processes never seal otherwise.
AUDIT_SEAL_INTERVAL = env.float("AUDIT_SEAL_INTERVAL", default=0.5)
AUDIT_SEAL_ON_COMMIT = env.bool("AUDIT_SEAL_ON_COMMIT", default=DJANGO_ENV == "test")
# Append-only file where the sealer records every new head of the chain (one JSON line: seq, hash, time,
# signature), outside the database: `audit_verify` checks the chain still reaches the last one, so a wiped or
# rolled-back trail shows. The same line goes to the "crm.audit.anchor" logger for shipping off the host.
# Required in production; empty (test default) records nothing.
AUDIT_ANCHOR_PATH = env.str(
    "AUDIT_ANCHOR_PATH",
    default="" if DJANGO_ENV != "development" else str(BASE_DIR / ".data" / "audit-anchor.jsonl"),
)
if PRODUCTION and not AUDIT_ANCHOR_PATH:
    raise ImproperlyConfigured(
        "AUDIT_ANCHOR_PATH must be set in production: an append-only file outside the database where the "
        "audit sealer records each head of the chain (audit_verify checks against it)."
    )

# Celery (Redis broker). Short tasks, late ack, one message at a time: see docs in config/celery.py.
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="")
if not CELERY_BROKER_URL:
    if PRODUCTION:
        raise ImproperlyConfigured("CELERY_BROKER_URL must be set in production.")
    CELERY_BROKER_URL = "redis://127.0.0.1:6379/0"
CELERY_RESULT_BACKEND = env.str("CELERY_RESULT_BACKEND", default=CELERY_BROKER_URL)
# The application's own Redis (rate-limit counters, cache, sessions): a redis-py URL, never handed to kombu.
# `./dev` writes it beside the broker's URL for the embedded Redis; unset, it is the broker's Redis in
# redis-py's dialect on the next database number (a cache.clear() must not flush the queued tasks).
REDIS_URL = env.str("REDIS_URL", default="").strip() or app_redis_url(CELERY_BROKER_URL)
if not REDIS_URL.startswith(("redis://", "rediss://", "unix://")):
    raise ImproperlyConfigured(
        "REDIS_URL must be a redis://, rediss:// or unix:// URL (it is given to redis-py, not to Celery)."
    )
# Django's own Redis cache on the app's Redis (redis-py URL: redis://, rediss:// or unix://): cached_db
# sessions read from it.
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "crm",
    }
}
CELERY_TIMEZONE = TIME_ZONE
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = 600
CELERY_TASK_SOFT_TIME_LIMIT = 540
# Must exceed the task time limit, or Redis redelivers a task that is still running.
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_RESULT_EXPIRES = 3600
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)

# Uploaded purchase files wait here for their import task (crm.analytics), deleted once imported: a
# directory web and worker processes share (the same machine, or a shared volume).
ANALYTICS_IMPORT_DIR = env.str("ANALYTICS_IMPORT_DIR", default=str(BASE_DIR / ".data" / "imports"))

# Retention runs (crm.retention): a slice whose last batch is older than this many seconds is stalled (its
# worker died between a commit and the next enqueue) and is re-sent by the watchdog, which beat runs every
# 30 seconds (schedule under 「定期タスク」; keep it at most this interval).
RETENTION_HEARTBEAT_SECONDS = env.int("RETENTION_HEARTBEAT_SECONDS", default=30)

# Disclosure packages (consent.disclosure): sealed files under the field keys, in a directory every web and
# worker process reaches (a private volume, never served by the web server); downloadable for
# DISCLOSURE_PACKAGE_DAYS after they are built, through links valid DISCLOSURE_LINK_SECONDS for the handler
# who asked for them. The retention policy 「完了した開示等請求の開示データ消去」 removes expired ones.
DISCLOSURE_PACKAGE_DIR = env.str(
    "DISCLOSURE_PACKAGE_DIR", default=str(BASE_DIR / ".data" / "disclosure-packages")
)
# Both directories default to .data/ inside the checkout, which a deployment replaces and does not back up:
# production names them (sealed packages a person is owed, files waiting for their import).
if PRODUCTION:
    for _shared_dir in ("ANALYTICS_IMPORT_DIR", "DISCLOSURE_PACKAGE_DIR"):
        if not env.str(_shared_dir, default="").strip():
            raise ImproperlyConfigured(
                f"{_shared_dir} must be set in production: a directory every web and worker process shares, "
                "outside the checkout and never served by the web server."
            )
DISCLOSURE_PACKAGE_DAYS = env.int("DISCLOSURE_PACKAGE_DAYS", default=30)
DISCLOSURE_LINK_SECONDS = env.int("DISCLOSURE_LINK_SECONDS", default=900)

# Security headers; strict in production.
# Django's cached database sessions: read from the app's Redis (CACHES), written through to the database.
SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_AGE = env.int("SESSION_COOKIE_AGE", default=8 * 3600)
X_FRAME_OPTIONS = "DENY"
# Content-Security-Policy (django-csp) on every answer: scripts, styles, fonts and images from this site only,
# and no inline script or style anywhere (the admin's, the public privacy page, the API docs). Images may
# also be data: URLs (the admin's and the API docs' icons). Nothing may frame a page or post a form elsewhere.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
if PRODUCTION:
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True

# Logs carry no personal data: only ids, counts and codes are logged by our code.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "filters": {
        "api_route_not_path": {"()": "config.log_filters.ApiRouteNotPath"},
        # A refused page is logged as one line, without the PermissionDenied traceback.
        "quiet_permission_denied": {"()": "config.log_filters.QuietPermissionDenied"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        # Django logs request bodies of failed requests nowhere, but SQL at DEBUG would carry values.
        "django.db.backends": {"level": "WARNING"},
        # "<reason>: <path>" of every 4xx/5xx: API paths hold external ids, so the route name is logged;
        # a 403 without its traceback.
        "django.request": {"filters": ["api_route_not_path", "quiet_permission_denied"]},
        # One line per new head of the audit chain (crm/audit/anchor.py): ship this stream off the host.
        "crm.audit.anchor": {"level": "INFO"},
        # django-axes logs each failure with the login name and address; the audit trail keeps them instead.
        "axes": {"level": "ERROR"},
    },
}

# Customer changelist: how long an exact count may take before the estimate is shown.
ADMIN_COUNT_TIMEOUT_MS = env.int("ADMIN_COUNT_TIMEOUT_MS", default=150)
# How long a process keeps a list's row estimate ("約 n 件"); exact counts are never kept (crm.paginators).
ADMIN_ESTIMATE_CACHE_SECONDS = env.float("ADMIN_ESTIMATE_CACHE_SECONDS", default=60.0)

# Integration API (crm/integrations): per-client rate limit, per-address budget of publishable (cookie)
# keys (counters in REDIS_URL), and how long an Idempotency-Key's answer is kept.
API_RATE_LIMIT_PER_MINUTE = env.int("API_RATE_LIMIT_PER_MINUTE", default=6000)
API_PUBLIC_RATE_LIMIT_PER_ADDRESS = env.int("API_PUBLIC_RATE_LIMIT_PER_ADDRESS", default=60)
API_IDEMPOTENCY_TTL_HOURS = env.int("API_IDEMPOTENCY_TTL_HOURS", default=24)

# The request desk (consent/requests): the internal APPI limit (calendar days from the day after receipt; the
# person may sue two weeks after the request, APPI Art. 39) and the public form's budgets per minute, per
# e-mail address (by keyed hash) and per source address (counters in REDIS_URL, as the API's).
APPI_REQUEST_DAYS = env.int("APPI_REQUEST_DAYS", default=14)
# Answered requests and their records are kept this many years after completion or rejection, then removed
# by the retention policy of scope 「完了した開示等請求とその記録」 (README: the limitation period).
REQUEST_RECORDS_KEEP_YEARS = env.int("REQUEST_RECORDS_KEEP_YEARS", default=3)
REQUEST_FORM_RATE_LIMIT_PER_ADDRESS = env.int("REQUEST_FORM_RATE_LIMIT_PER_ADDRESS", default=3)
REQUEST_FORM_RATE_LIMIT_PER_SOURCE = env.int("REQUEST_FORM_RATE_LIMIT_PER_SOURCE", default=10)

# E-mail (the request desk's messages to requesters, the incident notices) through Django's e-mail backend:
# EMAIL_URL as django-environ reads it (smtp+tls://user:password@host:587, consolemail://, filemail:///path);
# by default the console in development, memory (locmem) in tests, SMTP on localhost in production.
_email_default = {"test": "memorymail://", "development": "consolemail://"}.get(
    DJANGO_ENV, "smtp://localhost:25"
)
vars().update(env.email_url("EMAIL_URL", default=_email_default))
# An explicit backend class wins over EMAIL_URL's: incidents.mail.FileBasedEmailBackend (with EMAIL_FILE_PATH)
# can say which Message-IDs it has written, so an incident notice whose worker died is resolved without a
# second letter; with SMTP such a notice is shown for a person to check (README "Individual notices").
EMAIL_BACKEND = env.str("EMAIL_BACKEND", default=vars()["EMAIL_BACKEND"])
EMAIL_FILE_PATH = env.str("EMAIL_FILE_PATH", default=vars().get("EMAIL_FILE_PATH") or "") or None
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="privacy@example.co.jp")

CRM_COMPANY = {
    "name": env.str("CRM_COMPANY_NAME", default="株式会社サンプル"),
    "address": env.str("CRM_COMPANY_ADDRESS", default="東京都千代田区丸の内一丁目1番1号"),
    "representative": env.str("CRM_COMPANY_REPRESENTATIVE", default="代表取締役 山田 太郎"),
    "contact": env.str("CRM_PRIVACY_CONTACT", default="privacy@example.co.jp"),
}
