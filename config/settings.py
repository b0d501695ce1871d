"""Settings for the CRM, read from the environment (django-environ) and an optional `.env`.

DJANGO_ENV selects the mode: ``development`` (default), ``test`` or ``production``. Production refuses to
start when a secret is missing or a default is unsafe; development and test use fixed, clearly marked
development keys so that a fresh checkout runs with no set-up.
"""

from __future__ import annotations

import os
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

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
    # Fernet keys (urlsafe base64 of 32 bytes); newest first.
    "FIELD_ENCRYPTION_KEYS": "ZGV2LWZpZWxkLWtleS0yLW5vdC1mb3ItcHJvZHVjdGk=,"
    "ZGV2LWZpZWxkLWtleS0xLW5vdC1mb3ItcHJvZHVjdGk=",
    "BLIND_INDEX_KEY": "dev-blind-index-key-not-for-production-use-0123456789",
    "AUDIT_CHAIN_KEY": "dev-audit-chain-key-not-for-production-use-0123456789",
}


def _secret(name: str) -> str:
    """A secret from the environment. No default in production; `$`-references are not interpolated."""
    # Read os.environ directly: django-environ treats a value starting with `$` as a reference to another
    # variable and, with a default, silently falls back to it (see pitfalls: django-environ).
    raw = os.environ.get(name, "")
    if raw:
        if PRODUCTION and raw == _DEV_SECRETS[name]:
            raise ImproperlyConfigured(f"{name} is the development value; set a real secret in production.")
        return raw
    if PRODUCTION:
        raise ImproperlyConfigured(f"{name} must be set in production (see .env.example).")
    return _DEV_SECRETS[name]


SECRET_KEY = _secret("SECRET_KEY")
FIELD_ENCRYPTION_KEYS = [k.strip() for k in _secret("FIELD_ENCRYPTION_KEYS").split(",") if k.strip()]
BLIND_INDEX_KEY = _secret("BLIND_INDEX_KEY")
AUDIT_CHAIN_KEY = _secret("AUDIT_CHAIN_KEY")
if PRODUCTION:
    if len(SECRET_KEY) < 50:
        raise ImproperlyConfigured("SECRET_KEY must be at least 50 characters in production.")
    if len({SECRET_KEY, BLIND_INDEX_KEY, AUDIT_CHAIN_KEY, *FIELD_ENCRYPTION_KEYS}) != 3 + len(
        FIELD_ENCRYPTION_KEYS
    ):
        raise ImproperlyConfigured("SECRET_KEY, the encryption keys and the index keys must all differ.")

DEBUG = env.bool("DEBUG", default=not PRODUCTION)
if PRODUCTION and DEBUG:
    raise ImproperlyConfigured("DEBUG must be off in production.")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=[] if PRODUCTION else ["localhost", "127.0.0.1", "[::1]"])
if PRODUCTION and not ALLOWED_HOSTS:
    raise ImproperlyConfigured("ALLOWED_HOSTS must be set in production.")
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "guardian",
    "auditlog",
    "django_celery_beat",
    "ninja",  # serves the API docs' Swagger UI from our static files, not from a CDN
    "crm",
    "consent",
    "incidents",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "auditlog.middleware.AuditlogMiddleware",
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
try:
    DATABASES = {"default": env.db_url("DATABASE_URL")}
except ImproperlyConfigured as exc:
    raise ImproperlyConfigured(
        "DATABASE_URL is not set. Start the CRM with `./dev up` (it starts an embedded PostgreSQL) "
        "or point DATABASE_URL at PostgreSQL, e.g. postgres://user@127.0.0.1:5432/crm."
    ) from exc
if DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
    raise ImproperlyConfigured("Only PostgreSQL is supported (DATABASE_URL must be postgres://…).")
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
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
    "django.contrib.auth.backends.ModelBackend",
    "guardian.backends.ObjectPermissionBackend",
]
GUARDIAN_RAISE_403 = True
ANONYMOUS_USER_NAME = None  # no anonymous user row: nobody unauthenticated holds a permission

LANGUAGE_CODE = "ja"
LANGUAGES = [("ja", "日本語"), ("en", "English")]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = "Asia/Tokyo"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
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

# Celery (Redis broker). Short tasks, late ack, one message at a time: see docs in config/celery.py.
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="")
if not CELERY_BROKER_URL:
    if PRODUCTION:
        raise ImproperlyConfigured("CELERY_BROKER_URL must be set in production.")
    CELERY_BROKER_URL = "redis://127.0.0.1:6379/0"
CELERY_RESULT_BACKEND = env.str("CELERY_RESULT_BACKEND", default=CELERY_BROKER_URL)
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

# Security headers; strict in production.
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_AGE = env.int("SESSION_COOKIE_AGE", default=8 * 3600)
X_FRAME_OPTIONS = "DENY"
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
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        # Django logs request bodies of failed requests nowhere, but SQL at DEBUG would carry values.
        "django.db.backends": {"level": "WARNING"},
    },
}

# Customer changelist: how long an exact count may take before the estimate is shown.
ADMIN_COUNT_TIMEOUT_MS = env.int("ADMIN_COUNT_TIMEOUT_MS", default=150)

CRM_COMPANY = {
    "name": env.str("CRM_COMPANY_NAME", default="株式会社サンプル"),
    "address": env.str("CRM_COMPANY_ADDRESS", default="東京都千代田区丸の内一丁目1番1号"),
    "representative": env.str("CRM_COMPANY_REPRESENTATIVE", default="代表取締役 山田 太郎"),
    "contact": env.str("CRM_PRIVACY_CONTACT", default="privacy@example.co.jp"),
}
