"""Django settings for Astron. Every knob is an environment variable: see docs/configuration.md.

With none set, Astron runs embedded: SQLite in data/, an in-process cache and an in-memory
channel layer.
"""

import contextlib
import os
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from astron.env import (
    allowed_hosts,
    broker_url,
    database_from_url,
    env_bool,
    env_choice,
    env_int,
    env_list,
    env_number,
    env_rate,
    env_str,
    http_allow_hosts,
    llm_providers,
    redis_urls,
    secret_key_from_file,
    secrets_keys,
    sqlite_database,
    trusted_origins,
)

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = BASE_DIR / "data"

DEBUG = env_bool("DEBUG", False)

# --- Database -------------------------------------------------------------------------------

DATABASE_URL = env_str("DATABASE_URL")
DATABASE_POOL_MAX = env_int("DATABASE_POOL_MAX", 20, minimum=1)
if DATABASE_URL:
    DATABASES = {
        "default": database_from_url(
            "DATABASE_URL", DATABASE_URL, base_dir=BASE_DIR, pool_max=DATABASE_POOL_MAX
        )
    }
else:
    DATA_DIR.mkdir(mode=0o700, exist_ok=True)
    DATABASES = {"default": sqlite_database(str(DATA_DIR / "astron.sqlite3"))}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # A file, not memory, for tests: the crash test's subprocess and the browser tests' server
    # must open the same database. One per test process, so that runs side by side do not
    # share it.
    _database = Path(DATABASES["default"]["NAME"])
    DATABASES["default"]["TEST"] = {
        "NAME": str(_database.with_name(f"test_{_database.stem}_{os.getpid()}.sqlite3"))}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Secrets and hosts ----------------------------------------------------------------------

SECRET_KEY = env_str("SECRET_KEY")
if SECRET_KEY is not None and (len(SECRET_KEY) < 50 or len(set(SECRET_KEY)) < 5):
    raise ImproperlyConfigured(
        "SECRET_KEY must be at least 50 characters long, and random (at least 5 different "
        "characters).")
if SECRET_KEY is None:
    if DATABASE_URL and not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is required when DATABASE_URL is set and DEBUG is false."
        )
    SECRET_KEY = secret_key_from_file(DATA_DIR / "secret_key")

# The keys of the secrets store (docs/secrets.md): the first encrypts, all decrypt.
SECRETS_KEYS = secrets_keys("SECRETS_KEY", env_str("SECRETS_KEY"))
if not SECRETS_KEYS:
    if DATABASE_URL and not DEBUG:
        raise ImproperlyConfigured(
            "SECRETS_KEY is required when DATABASE_URL is set and DEBUG is false: it encrypts "
            "the secrets store (at least 32 characters; a comma-separated list rotates keys)."
        )
    SECRETS_KEYS = [secret_key_from_file(DATA_DIR / "secrets_key")]

ALLOWED_HOSTS = allowed_hosts("ALLOWED_HOSTS", env_list("ALLOWED_HOSTS",
                                                          ["127.0.0.1", "localhost"]))
CSRF_TRUSTED_ORIGINS = trusted_origins("CSRF_TRUSTED_ORIGINS", env_list("CSRF_TRUSTED_ORIGINS"))

# --- Cache and channel layer ----------------------------------------------------------------

REDIS_URL = env_str("REDIS_URL")
if REDIS_URL:
    cache_url, channels_url = redis_urls("REDIS_URL", REDIS_URL)
    CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": cache_url,
            "KEY_PREFIX": "astron",
            "OPTIONS": {
                # Never pickle what goes to a shared server (docs/platform.md, Caching).
                "SERIALIZER": "django_redis.serializers.msgpack.MSGPackSerializer",
                # Spans for the cache's commands (not the channel layer's) when tracing is on.
                "CONNECTION_FACTORY": "tracing.redis.TracedConnectionFactory",
                # A Redis that hangs costs a request at most this much: the caches then carry
                # on without it for a few seconds (flows/cache.py, docs/platform.md Caching).
                "SOCKET_CONNECT_TIMEOUT": 1.0,
                "SOCKET_TIMEOUT": 2.0,
            },
        }
    }
    # Redis pub/sub: a published batch is pushed to every subscribed process at once, where
    # channels_redis's list-based layer made each process pop it with two or more round trips
    # (docs/benchmarks.md, Live events). Pub/sub names are not scoped by database, so the
    # prefix carries the URL's database: two deployments on one server stay apart. Nothing
    # is lost for good when a message is: watchers fill gaps from the database.
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [channels_url],
                       "prefix": f"astron.{channels_url.rsplit('/', 1)[1]}."},
        }
    }
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": "astron",
        }
    }
    # Channels' in-memory layer, made safe for the executor's thread publishing to consumers
    # on the server's loop (flows/layers.py).
    CHANNEL_LAYERS = {"default": {"BACKEND": "flows.layers.CrossLoopInMemoryChannelLayer"}}

# --- Application ----------------------------------------------------------------------------

# The pages' own sign-in (flows/pages): for every user, staff or not.
LOGIN_URL = "pages:login"
LOGIN_REDIRECT_URL = "pages:index"
LOGOUT_REDIRECT_URL = "pages:login"

INSTALLED_APPS = [
    "daphne",  # first, so that `manage.py runserver` serves ASGI through daphne
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI's assets, served locally: /api/docs/ needs no CDN
    "channels",
    "flows.apps.FlowsConfig",
    "tracing.apps.TracingConfig",  # OpenTelemetry from OTEL_*, /metrics, the admin dashboard
]

MIDDLEWARE = [
    "flows.probes.ProbeMiddleware",  # /healthz and /readyz, whatever the Host header
    "django.middleware.security.SecurityMiddleware",
    "astron.static.CollectedFirst",  # WhiteNoise, collected files first
    "flows.api.middleware.BodyLimitMiddleware",  # 413 before anything reads an API body
    "django.contrib.sessions.middleware.SessionMiddleware",
    "flows.api.middleware.CommonMiddleware",  # Django's, without slash redirects under /api/
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "flows.audit.AuditedRequests",  # what a request changes is recorded as its user's doing
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "flows.pages.security.ContentSecurityPolicyMiddleware",  # the pages' scripts: ours only
]

ROOT_URLCONF = "astron.urls"
WSGI_APPLICATION = "astron.wsgi.application"
ASGI_APPLICATION = "astron.asgi.application"

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
            ],
        },
    },
]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- API (docs/api.md) ------------------------------------------------------------------

# A body over 2 MiB is refused (413); flow documents themselves stop at 1 MiB (docs/dsl.md §1).
DATA_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # First, so that missing credentials answer 401 with a WWW-Authenticate header.
        "flows.api.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_THROTTLE_CLASSES": ["flows.api.throttling.UserRateThrottle"],
    "DEFAULT_PAGINATION_CLASS": "flows.api.pagination.NewestFirst",
    "DEFAULT_FILTER_BACKENDS": ["flows.api.filters.FilterBackend"],
    "DEFAULT_PARSER_CLASSES": ["flows.api.parsers.StrictJSONParser"],
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        *(["rest_framework.renderers.BrowsableAPIRenderer"] if DEBUG else []),
    ],
    "EXCEPTION_HANDLER": "flows.api.exceptions.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Astron API",
    "DESCRIPTION": "Flows, versions and runs of the Astron workflow platform (docs/api.md).",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_AUTHENTICATION": [],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
}

# --- Static files: served by the application itself (WhiteNoise) in every mode ---------------

STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"
with contextlib.suppress(OSError):  # WhiteNoise warns at every start about a missing folder
    STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # Not the manifest variant: it would make every page fail until collectstatic has run,
    # and the tests never run it.
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# The apps' static folders are served directly too, so a server that never ran collectstatic
# (its files are only compressed copies) still serves every page's CSS and scripts.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

# --- Runs and the world they reach ------------------------------------------------------------

# inline: the serving processes execute runs. celery: worker processes do
# (`celery -A astron worker`, astron/celery.py), rung through the broker (docs/scaling.md).
RUN_EXECUTOR = env_choice("RUN_EXECUTOR", "inline", ("inline", "celery"))
# Most runs one worker process executes at once; the rest wait in the broker.
RUN_WORKER_CONCURRENCY = env_int("RUN_WORKER_CONCURRENCY", 200, minimum=1, maximum=100_000)
# Most runs of one owner executing at once (docs/api.md, Capacity); a flow's own
# max_active_runs may be lower. Runs over a limit stay queued and start as slots free.
RUN_MAX_ACTIVE_PER_OWNER = env_int("RUN_MAX_ACTIVE_PER_OWNER", 100, minimum=1,
                                   maximum=1_000_000)
# How long a stopping worker (SIGTERM) lets its runs finish before it hands them over.
RUN_DRAIN_S = env_number("RUN_DRAIN_S", 10, minimum=0, maximum=3600)
if RUN_EXECUTOR == "celery":
    if not REDIS_URL:
        raise ImproperlyConfigured(
            "RUN_EXECUTOR=celery needs REDIS_URL: a run's events reach the serving processes "
            "(live pages, waiting requests) from the workers through Redis.")
    CELERY_BROKER_URL = broker_url("CELERY_BROKER_URL", env_str("CELERY_BROKER_URL"))
else:
    CELERY_BROKER_URL = env_str("CELERY_BROKER_URL") or "memory://"  # never used
# The doorbell's queue (astron/celery.py): JSON only, acknowledged once the run is handed to
# the worker's loop, no results kept. A worker reserves 4 messages: with 1 and late acks,
# RabbitMQ delivered about 14 a second here (70 ms each, docs/scaling.md), with 4 over 300.
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 4
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
# The broker's queue of doorbells: deployments (or test sessions) sharing a broker keep
# apart by naming their own.
CELERY_TASK_DEFAULT_QUEUE = env_str("RUN_QUEUE") or "astron.runs"
# One process, one event loop with up to RUN_WORKER_CONCURRENCY runs: the task only hands a
# run to that loop, so the pool that runs tasks needs no more than the main thread.
CELERY_WORKER_POOL = "solo"
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A publish that cannot reach the broker gives up quickly: the sweep starts the run anyway.
CELERY_BROKER_CONNECTION_TIMEOUT = 2
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 2, "interval_start": 0.1,
                                    "interval_step": 0.2, "interval_max": 0.5}
# How long a worker's claim on a run lasts without renewal; a run whose worker died is
# taken over after this (renewed every third of it while the run lives).
RUN_LEASE_S = env_number("RUN_LEASE_S", 30, minimum=1, maximum=3600)
# A run whose worker died this many times in a row while executing it fails (worker_lost)
# instead of being taken up again: it would crash every worker after it.
RUN_MAX_RECOVERIES = env_int("RUN_MAX_RECOVERIES", 3, minimum=1, maximum=1000)
# The largest value a node may render or produce, as JSON (docs/dsl.md §3 rule 7).
RUN_VALUE_MAX_BYTES = env_int("RUN_VALUE_MAX_BYTES", 4 * 1024 * 1024, minimum=1024,
                              maximum=1024 * 1024 * 1024)
# The most a run's nodes may record (their outputs as JSON); past it a node fails too_large.
RUN_STORED_MAX_MB = env_int("RUN_STORED_MAX_MB", 256, minimum=1, maximum=1024 * 1024)
API_RATE = env_rate("API_RATE", "1200/minute")
WEBHOOK_RATE = env_rate("WEBHOOK_RATE", "120/minute")  # per webhook, whoever sends
HTTP_ALLOW_HOSTS = http_allow_hosts("HTTP_ALLOW_HOSTS", env_list("HTTP_ALLOW_HOSTS"))
CODE_WORKERS = env_int("CODE_WORKERS", 2, minimum=0, maximum=64)
CODE_CPU_S = env_int("CODE_CPU_S", 10, minimum=1)
CODE_MEMORY_MB = env_int("CODE_MEMORY_MB", 256, minimum=16)
CODE_OUTPUT_KB = env_int("CODE_OUTPUT_KB", 1024, minimum=1)
CODE_WALL_S = env_int("CODE_WALL_S", 30, minimum=1)
LLM_PROVIDERS = llm_providers("LLM_PROVIDERS")
SILK = env_bool("SILK", False)
SILK_INTERCEPT_PERCENT = env_int("SILK_INTERCEPT_PERCENT", 10, minimum=0, maximum=100)
if SILK:  # request and query profiling at /silk/, staff only (tracing/silk.py)
    from tracing.silk import silk_settings

    globals().update(silk_settings(INSTALLED_APPS, MIDDLEWARE, SILK_INTERCEPT_PERCENT))
