"""Django settings, read from environment variables.

The embedded default needs nothing: a SQLite file in ``BROKERDESK_DATA_DIR`` (``./var``),
the outbox table as the event bus and a local documents directory. Production sets
``DATABASE_URL`` (PostgreSQL) and ``BUS_URL`` (``redis://…`` or ``nats://…``).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent
DATA_DIR = Path(os.environ.get("BROKERDESK_DATA_DIR", Path.cwd() / "var")).resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)


def _env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    return default if value is None else value.strip().lower() in {"1", "true", "yes", "on"}


def _secret_key() -> str:
    """Take SECRET_KEY from the environment, else a random key kept in the data directory."""
    if key := os.environ.get("SECRET_KEY"):
        return key
    key_file = DATA_DIR / "secret_key"
    if not key_file.exists():
        key_file.write_text(secrets.token_urlsafe(50))
        key_file.chmod(0o600)
    return key_file.read_text().strip()


SECRET_KEY = _secret_key()
DEBUG = _env_bool("DEBUG", False)
ALLOWED_HOSTS = os.environ.get("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]").split(",")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "brokerdesk.core",
    "brokerdesk.ledger",
    "brokerdesk.trading",
    "django_countries",
    "brokerdesk.staff",
    "brokerdesk.clients",
    "brokerdesk.compliance",
    "allauth",
    "allauth.account",
    "allauth.mfa",
    "brokerdesk.portal",
    "brokerdesk.partnerportal",
    "brokerdesk.backoffice",
    "brokerdesk.payments",
    "brokerdesk.partners",
    "brokerdesk.bonuses",
    "brokerdesk.propfirm",
    "brokerdesk.automations",
    "brokerdesk.support",
    "brokerdesk.notifications",
    "brokerdesk.reporting",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    # staff without an active authenticator are sent to set one up before any page
    "brokerdesk.backoffice.middleware.StaffMfaRequiredMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "brokerdesk.urls"
WSGI_APPLICATION = "brokerdesk.wsgi.application"

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
                "brokerdesk.portal.context.surface",
            ],
        },
    },
]


def _database() -> dict[str, Any]:
    """PostgreSQL from DATABASE_URL, else the embedded SQLite file (WAL, serialised writers)."""
    url = os.environ.get("DATABASE_URL")
    if url:
        db: dict[str, Any] = dict(dj_database_url.parse(url, conn_max_age=60))
        if db["ENGINE"] == "django.db.backends.postgresql":
            db.setdefault("TEST", {})["NAME"] = os.environ.get(
                "TEST_DATABASE_NAME", f"test_{db['NAME']}"
            )
            # psycopg prepares a statement it has run five times (Django turns this off): the
            # hot paths bind their arrays on the server and then skip parsing and planning.
            db.setdefault("OPTIONS", {})["prepare_threshold"] = 5
        return db
    sqlite_path = DATA_DIR / os.environ.get("SQLITE_NAME", "brokerdesk.sqlite3")
    return {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": str(sqlite_path),
        "OPTIONS": {
            # One writer at a time: every write transaction takes the lock when it begins.
            "transaction_mode": "IMMEDIATE",
            "timeout": 30,
            "init_command": (
                "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;"
            ),
        },
        # Tests run against a file (threads need a shared database), beside the real one.
        "TEST": {"NAME": str(sqlite_path.with_name(f"test_{sqlite_path.name}"))},
    }


DATABASES = {"default": _database()}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Event bus: "outbox" (embedded: the outbox table is the bus), redis://… or nats://…
BUS_URL = os.environ.get("BUS_URL", "outbox")
BUS_STREAM_PREFIX = os.environ.get("BUS_STREAM_PREFIX", "brokerdesk")
DOCUMENTS_DIR = Path(os.environ.get("DOCUMENTS_DIR", DATA_DIR / "documents"))

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
LOCALE_PATHS = [BASE_DIR / "locale"]
# Every user-facing string is translated into each of these (src/brokerdesk/locale/<code>/).
LANGUAGES = [
    ("en", "English"),
    ("ar", "Arabic"),
    ("de", "German"),
    ("es", "Spanish"),
    ("fa", "Persian"),
    ("fr", "French"),
    ("hi", "Hindi"),
    ("id", "Indonesian"),
    ("it", "Italian"),
    ("ja", "Japanese"),
    ("ko", "Korean"),
    ("ms", "Malay"),
    ("nl", "Dutch"),
    ("pl", "Polish"),
    ("pt-br", "Brazilian Portuguese"),
    ("ru", "Russian"),
    ("th", "Thai"),
    ("tr", "Turkish"),
    ("uk", "Ukrainian"),
    ("vi", "Vietnamese"),
    ("zh-hans", "Simplified Chinese"),
    ("zh-hant", "Traditional Chinese"),
]

STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)
# Our design system; htmx is served from node_modules (npm install at set-up, never committed).
STATICFILES_DIRS: list[Any] = [BASE_DIR / "static"]
_NODE_MODULES = BASE_DIR.parent.parent / "node_modules"
_VENDOR = {
    "vendor/htmx": _NODE_MODULES / "htmx.org" / "dist",
    "vendor/chartjs": _NODE_MODULES / "chart.js" / "dist",  # charts on the dashboards
    "vendor/axe-core": _NODE_MODULES / "axe-core",  # the accessibility check of the browser tests
}
for _prefix, _path in _VENDOR.items():
    if _path.is_dir():
        STATICFILES_DIRS.append((_prefix, _path))

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_SECURE = _env_bool("SECURE_COOKIES", False)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
X_FRAME_OPTIONS = "DENY"
CSRF_COOKIE_HTTPONLY = True
SESSION_COOKIE_AGE = int(os.environ.get("SESSION_COOKIE_AGE", 8 * 3600))  # seconds
SESSION_EXPIRE_AT_BROWSER_CLOSE = _env_bool("SESSION_EXPIRE_AT_BROWSER_CLOSE", True)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"

# Caches: allauth's rate limits count in the cache; share them between processes with Redis.
_CACHE_URL = os.environ.get("CACHE_URL", "")
CACHES: dict[str, Any] = {
    "default": (
        {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": _CACHE_URL}
        if _CACHE_URL.startswith(("redis://", "rediss://"))
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    )
}

# E-mail: printed to the console unless an SMTP host is configured.
EMAIL_HOST = os.environ.get("EMAIL_HOST", "")
EMAIL_BACKEND = os.environ.get(
    "EMAIL_BACKEND",
    "django.core.mail.backends.smtp.EmailBackend"
    if EMAIL_HOST
    else "django.core.mail.backends.console.EmailBackend",
)
EMAIL_PORT = int(os.environ.get("EMAIL_PORT", 587))
EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = _env_bool("EMAIL_USE_TLS", True)
EMAIL_USE_SSL = _env_bool("EMAIL_USE_SSL", False)
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "Brokerdesk <no-reply@localhost>")
# EMAIL_BACKEND=django.core.mail.backends.filebased.EmailBackend writes each e-mail here.
EMAIL_FILE_PATH = os.environ.get("EMAIL_FILE_PATH", str(DATA_DIR / "mail"))

# Sign-up and sign-in (django-allauth): registration by e-mail, verified before the first
# sign-in; MFA offered to clients, required of staff (brokerdesk.backoffice.middleware).
ALLOW_SIGNUP = _env_bool("ALLOW_SIGNUP", True)
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "/portal/"
ACCOUNT_ADAPTER = "brokerdesk.portal.accounts.AccountAdapter"
ACCOUNT_FORMS = {
    "login": "brokerdesk.portal.accounts.ClientLoginForm",
    "signup": "brokerdesk.portal.accounts.ClientSignupForm",
}
ACCOUNT_LOGIN_METHODS = {"email", "username"}  # clients use the e-mail; staff either
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*", "password2*"]
ACCOUNT_UNIQUE_EMAIL = True
ACCOUNT_EMAIL_VERIFICATION = "mandatory"
ACCOUNT_CONFIRM_EMAIL_ON_GET = False
ACCOUNT_LOGIN_ON_EMAIL_CONFIRMATION = False
ACCOUNT_LOGOUT_ON_PASSWORD_CHANGE = False
ACCOUNT_SESSION_REMEMBER = None  # the sign-in form offers "remember me"
ACCOUNT_EMAIL_SUBJECT_PREFIX = "[Brokerdesk] "
ACCOUNT_DEFAULT_HTTP_PROTOCOL = "https" if SESSION_COOKIE_SECURE else "http"
# Lockout: 5 failed sign-ins per e-mail address in 5 minutes, 10 per IP per minute.
ACCOUNT_RATE_LIMITS = {
    "login": "30/m/ip",
    "login_failed": "10/m/ip,5/5m/key",
    "signup": "20/m/ip",
    "reset_password": "20/m/ip,5/m/key",
}
SIGNUP_JURISDICTION = os.environ.get("SIGNUP_JURISDICTION", "")  # empty: the client picks
MFA_SUPPORTED_TYPES = ["totp", "recovery_codes", "webauthn"]
MFA_TOTP_ISSUER = os.environ.get("MFA_TOTP_ISSUER", "Brokerdesk")
MFA_ADAPTER = "brokerdesk.backoffice.mfa.MfaAdapter"
MFA_WEBAUTHN_ALLOW_INSECURE_ORIGIN = DEBUG

LOG_LEVEL = os.environ.get("LOG_LEVEL", "INFO")
LOGGING: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    # JSON lines, secrets redacted (brokerdesk.core.logging)
    "formatters": {"json": {"()": "brokerdesk.core.logging.json_formatter"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "json"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    # fpdf2 subsets the statement font through fontTools, which narrates every table at INFO
    "loggers": {"fontTools": {"level": "WARNING"}},
}
