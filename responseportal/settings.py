"""Response Portal settings, read from environment variables.

With nothing set, the portal refuses to start (no SECRET_KEY, DEBUG off). `make run` sets
DEBUG=true, which gives the embedded default: SQLite in the project folder and Celery tasks
run in-process. Production sets SECRET_KEY, ALLOWED_HOSTS, DATABASE_URL and CELERY_BROKER_URL.
"""

import os
import re
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default).strip()


def env_bool(name: str, default: bool = False) -> bool:
    value = env_str(name)
    if not value:
        return default
    if value.lower() in {"1", "true", "yes", "on"}:
        return True
    if value.lower() in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name}={value!r} is not a boolean: expected true or false.")


def env_int(name: str, default: int) -> int:
    value = env_str(name)
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={value!r} is not a whole number.") from None


def env_float(name: str, default: float) -> float:
    value = env_str(name)
    if not value:
        return default
    # Plain ASCII decimals only: float() would also take "inf", "1_0" and other scripts' digits.
    if not re.fullmatch(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)", value):
        raise ImproperlyConfigured(f"{name}={value!r} is not a number: expected e.g. 10 or 0.5.")
    return float(value)


def env_list(name: str, default: list[str]) -> list[str]:
    value = env_str(name)
    if not value:
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


DEBUG = env_bool("DEBUG")

SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. Set the SECRET_KEY environment variable to a long random "
            "value (for example the output of `python -c 'import secrets; "
            "print(secrets.token_urlsafe(50))'`), or set DEBUG=true for local development."
        )
    SECRET_KEY = "insecure-development-key-used-only-with-debug-on"

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "crispy_forms",
    "crispy_bootstrap5",
    "bootstrap",
    "axes",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "responseportal",
    "actions",
    "audit",
    "accounts",
    "approvals",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "api",
    "sso",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # Before anything reads a body: an API body past the limit is a JSON 413 on every route.
    "api.middleware.BodyLimitMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "accounts.middleware.SecondFactorPolicyMiddleware",
    "responseportal.middleware.refresh_idle_session",
    "responseportal.middleware.user_time_zone",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "responseportal.urls"
WSGI_APPLICATION = "responseportal.wsgi.application"

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
                "responseportal.navigation.navigation",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL") or f"sqlite:///{BASE_DIR / 'db.sqlite3'}",
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Embedded SQLite, one writer at a time. A transaction takes the write lock when it begins
    # (IMMEDIATE), so two admins deciding one request queue up and the second reads the
    # first's decision, as on PostgreSQL; a deferred transaction that read before writing
    # would fail at once with "database is locked", whatever the timeout. A writer waits
    # up to SQLITE_BUSY_TIMEOUT seconds for the lock, and in WAL mode readers (a page, a
    # streaming CSV export) neither wait for writers nor hold them up.
    DATABASES["default"]["OPTIONS"] = {
        **DATABASES["default"].get("OPTIONS", {}),
        "transaction_mode": "IMMEDIATE",
        "timeout": env_int("SQLITE_BUSY_TIMEOUT", 20),
        "init_command": "PRAGMA journal_mode=WAL",
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": 12},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

AUTHENTICATION_BACKENDS = [
    # First, so a locked-out username and address is refused before its password is checked.
    "axes.backends.AxesStandaloneBackend",
    # Refuses a right password of a member of an organization that switched password
    # sign-in off (single sign-on only), with a message; it signs nobody in itself.
    "sso.backends.PasswordSignInPolicy",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = 5
AXES_COOLOFF_TIME = timedelta(minutes=env_int("LOCKOUT_MINUTES", 15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
# A lockout lasts AXES_COOLOFF_TIME from the failure that started it. Attempts during it are
# refused unchecked and only counted (audit/flood.py); they neither extend it nor grow axes' row.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_CLIENT_IP_CALLABLE = "responseportal.http.client_ip"
AXES_VERBOSE = False

# Step-up (accounts/stepup.py): the changes that matter need a second factor proved within
# this many seconds; older, the portal asks for it again before it completes the change.
STEP_UP_MAX_AGE = env_int("STEP_UP_MAX_AGE", 10 * 60)
# Passkeys: the relying party's id, the domain the passkeys belong to (by default the host the
# portal is reached at); the origins a passkey may be used from (by default the page's own).
WEBAUTHN_RP_ID = env_str("WEBAUTHN_RP_ID")
WEBAUTHN_RP_NAME = env_str("WEBAUTHN_RP_NAME", "Response Portal")
WEBAUTHN_ORIGINS = env_list("WEBAUTHN_ORIGINS", [])
# The issuer shown by authenticator apps next to the code.
OTP_TOTP_ISSUER = env_str("OTP_TOTP_ISSUER", "Response Portal")

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

# Security headers and cookies. Behind a TLS-terminating proxy, set BEHIND_TLS_PROXY=true.
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not DEBUG)
if env_bool("BEHIND_TLS_PROXY"):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if DEBUG else 31_536_000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", True)
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = env_bool("SECURE_COOKIES", not DEBUG)
SESSION_COOKIE_HTTPONLY = CSRF_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = CSRF_COOKIE_SAMESITE = "Lax"
# A session ends after this long without a request (responseportal.middleware keeps it alive).
SESSION_COOKIE_AGE = env_int("SESSION_IDLE_MINUTES", 30) * 60

_SELF, _NONE = "'self'", "'none'"
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [_SELF],
        "script-src": [_SELF],
        "style-src": [_SELF],
        # Bootstrap draws a few of its icons from data: URIs in its stylesheet.
        "img-src": [_SELF, "data:"],
        "font-src": [_SELF],
        "connect-src": [_SELF],
        "form-action": [_SELF],
        "frame-ancestors": [_NONE],
        "base-uri": [_NONE],
        "object-src": [_NONE],
    }
}

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}
# Tests and `runserver` without DEBUG serve files straight from the apps, with no collectstatic.
WHITENOISE_USE_FINDERS = DEBUG or env_bool("WHITENOISE_USE_FINDERS")

CRISPY_ALLOWED_TEMPLATE_PACKS = "bootstrap5"
CRISPY_TEMPLATE_PACK = "bootstrap5"

EMAIL_BACKEND = env_str(
    "EMAIL_BACKEND",
    "django.core.mail.backends.console.EmailBackend"
    if DEBUG
    else "django.core.mail.backends.smtp.EmailBackend",
)
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS")
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "response-portal@localhost")
# The portal's address as its users reach it, for the links in e-mails.
PORTAL_URL = env_str("PORTAL_URL", "http://127.0.0.1:8000").rstrip("/")

# Celery: with no broker configured (the embedded default) tasks run in-process.
CELERY_TASK_ALWAYS_EAGER = not env_str("CELERY_BROKER_URL")
# In-process, Celery still names a broker when it sends: kombu's in-memory one, so that it does
# not guess one at localhost (and say so in the console).
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL") or "memory://localhost/"
# In-process like in a worker: a task's error is logged (and its retries run at once), never
# raised into the web request that committed the change.
CELERY_TASK_EAGER_PROPAGATES = False
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 600)
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 540)
CELERY_TIMEZONE = TIME_ZONE
# Deployments (or test runs) sharing one Redis each take a queue of their own.
CELERY_TASK_DEFAULT_QUEUE = env_str("CELERY_TASK_DEFAULT_QUEUE", "celery")
# The outcome of a task is in the database (request and target statuses), not in Celery.
CELERY_TASK_IGNORE_RESULT = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A web process never waits long for a broker that is down: the request stays queued and
# `dispatch_stranded` sends it again later.
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 2,
    "interval_start": 0,
    "interval_step": 0.5,
    "interval_max": 1,
}
CELERY_BROKER_TRANSPORT_OPTIONS = {
    # A message not acknowledged this long after delivery (its worker died) is delivered
    # again; it must exceed the longest run of a task, retries' waits included.
    "visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 3600),
    "socket_connect_timeout": 5,
}
# Periodic jobs (`celery -A responseportal beat`), each also a management command. A run
# that no worker picked up within the minute is dropped: the next one does the same work.
CELERY_BEAT_SCHEDULE = {
    name: {"task": f"approvals.tasks.{task}", "schedule": 60.0, "options": {"expires": 55}}
    for name, task in [
        ("expire-pending-requests", "expire_requests"),
        ("end-expired-remote-shells", "end_expired_sessions"),
        ("redispatch-stranded-requests", "dispatch_stranded"),
        ("deliver-notifications", "deliver_notifications"),
        ("send-notification-digests", "send_digests"),
        ("announce-overdue-break-glass-reviews", "announce_overdue_reviews"),
        ("remind-admins-of-waiting-requests", "send_reminders"),
    ]
}
# Approved or queued this many seconds without running: the message was lost, send it again.
EXECUTION_REDISPATCH_AFTER = env_int("EXECUTION_REDISPATCH_AFTER", 300)
# In progress with no activity for this long: its worker and its message were both lost.
# Longer than one attempt can run (the hard time limit) plus the longest wait between retries.
EXECUTION_STALLED_AFTER = env_int("EXECUTION_STALLED_AFTER", CELERY_TASK_TIME_LIMIT + 300)
# A worker running a request marks it alive this often (seconds) ...
EXECUTION_HEARTBEAT_INTERVAL = env_float("EXECUTION_HEARTBEAT_INTERVAL", 10)
# ... and a request in progress silent this long has lost its worker: dispatch_stranded
# (every minute) sends it again, so it resumes at most this plus a minute after the worker died.
EXECUTION_HEARTBEAT_TIMEOUT = env_float("EXECUTION_HEARTBEAT_TIMEOUT", 60)
if not 0 < 3 * EXECUTION_HEARTBEAT_INTERVAL <= EXECUTION_HEARTBEAT_TIMEOUT:
    raise ImproperlyConfigured(
        f"EXECUTION_HEARTBEAT_INTERVAL={EXECUTION_HEARTBEAT_INTERVAL:g} and "
        f"EXECUTION_HEARTBEAT_TIMEOUT={EXECUTION_HEARTBEAT_TIMEOUT:g} do not fit: expected a "
        "positive interval and a timeout of at least three intervals (e.g. 10 and 60), so "
        "that one late heartbeat never makes a running request look abandoned."
    )
# A worker that starts a queued request takes up to this many queued requests at once (it
# included), runs their jobs and finishes them together: fewer transactions in an outbreak.
# 1 runs every request on its own.
EXECUTION_BATCH_SIZE = env_int("EXECUTION_BATCH_SIZE", 20)
if not 1 <= EXECUTION_BATCH_SIZE <= 1000:
    raise ImproperlyConfigured(
        f"EXECUTION_BATCH_SIZE={EXECUTION_BATCH_SIZE}: expected 1 to 1000 requests (one "
        "transaction starts them all, and another finishes them)."
    )

# Executors run approved requests: "simulated" (demos and tests) or "webhook".
RESPONSE_EXECUTOR = env_str("RESPONSE_EXECUTOR", "simulated")
SIMULATED_EXECUTOR_DELAY = float(env_str("SIMULATED_EXECUTOR_DELAY", "0.5"))
EXECUTOR_WEBHOOK_URL = env_str("EXECUTOR_WEBHOOK_URL")
EXECUTOR_WEBHOOK_SECRET = env_str("EXECUTOR_WEBHOOK_SECRET")
EXECUTOR_WEBHOOK_TIMEOUT = float(env_str("EXECUTOR_WEBHOOK_TIMEOUT", "10"))

# Organizations' notification webhooks: the signing secret, the timeout, and whether an
# address inside the portal's own network may be used (only for development).
NOTIFY_WEBHOOK_SECRET = env_str("NOTIFY_WEBHOOK_SECRET")
NOTIFY_WEBHOOK_TIMEOUT = float(env_str("NOTIFY_WEBHOOK_TIMEOUT", "10"))
NOTIFY_WEBHOOK_ALLOW_PRIVATE = env_bool("NOTIFY_WEBHOOK_ALLOW_PRIVATE", DEBUG)

# Single sign-on (sso/): whether an identity provider may be inside the portal's own network
# (plain http, private addresses; on with DEBUG, for a demo or test provider), how far the
# provider's clock may be off from ours (seconds, for exp and iat), and how long the portal
# waits for the provider.
SSO_ALLOW_PRIVATE_ISSUERS = env_bool("SSO_ALLOW_PRIVATE_ISSUERS", DEBUG)
SSO_CLOCK_LEEWAY = env_int("SSO_CLOCK_LEEWAY", 60)
SSO_HTTP_TIMEOUT = env_float("SSO_HTTP_TIMEOUT", 10)

# The API (api/): bearer tokens only (no session, so no CSRF), errors as problem+json.
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["api.auth.BearerTokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_THROTTLE_CLASSES": ["api.auth.PerTokenRateThrottle"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "api.problems.exception_handler",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Response Portal API",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
}
# Requests per token: "N/s", "N/min", "N/hour" or "N/day"; over it, 429 with Retry-After.
API_RATE_LIMIT = env_str("API_RATE_LIMIT", "120/min")
# Where the counts are kept: with several web processes, set CACHE_URL (redis://…) so that
# they share one count per token; the default, process memory, counts per process.
CACHE_URL = env_str("CACHE_URL")
CACHES = {
    "default": (
        {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": CACHE_URL}
        if CACHE_URL
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    )
}
API_RATE_CACHE = "default"

# How many proxies in front of the portal append to X-Forwarded-For; 0 trusts only REMOTE_ADDR.
TRUSTED_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", 0)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    # Lockouts are recorded in the audit log; axes' own lines would repeat them.
    "loggers": {"axes": {"level": "WARNING"}},
}
