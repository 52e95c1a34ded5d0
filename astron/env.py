"""Strict readers for configuration from environment variables (docs/configuration.md).

django-environ reads the variables (`NAME_FILE` holding the path of a file with the value,
for secrets) and turns database URLs into Django's settings; what it lets through, this
module refuses. Every reader takes the variable's name and a default. An unset or empty
variable gives the default; a malformed one raises ImproperlyConfigured naming the variable,
so a typo stops the process at start instead of changing behaviour quietly: an integer
written `1_0` or in another script's digits, a boolean that is neither true nor false, both
`NAME` and `NAME_FILE`, an empty secret file, a database URL with an option PostgreSQL does
not know or an in-memory SQLite database.
"""

import ipaddress
import math
import os
import re
import secrets
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import environ
from django.core.exceptions import ImproperlyConfigured

_ENV = environ.FileAwareEnv()
# Read the file each time: a secret rotated under a running process's command (manage.py) or
# a test's temporary file must not come back from a cache.
_ENV.ENVIRON = environ.fileaware_mapping.FileAwareMapping(cache=False)

_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no"}


def _raw(name: str) -> str | None:
    file_name = os.environ.get(f"{name}_FILE", "")
    if os.environ.get(name) and file_name:
        raise ImproperlyConfigured(f"Set {name} or {name}_FILE, not both.")
    try:
        value = _ENV.str(name, default="")
    except OSError as error:
        raise ImproperlyConfigured(
            f"{name}_FILE: cannot read {file_name!r}: {error.strerror}") from error
    if file_name:
        value = value.rstrip("\r\n")
        if not value.strip():
            # A secret file left empty by a failed deploy must not mean "use the default".
            raise ImproperlyConfigured(f"{name}_FILE: {file_name!r} is empty.")
    return value or None


_INTEGER = re.compile(r"[+-]?[0-9]+")


def env_str(name: str, default: str | None = None) -> str | None:
    value = _raw(name)
    return default if value is None else value


def env_bool(name: str, default: bool) -> bool:
    value = _raw(name)
    if value is None:
        return default
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be one of true/false/1/0/yes/no, not {value!r}.")


def env_int(
    name: str, default: int, *, minimum: int | None = None, maximum: int | None = None
) -> int:
    value = _raw(name)
    if value is None:
        return default
    if not _INTEGER.fullmatch(value.strip()):  # int() would take "1_0" and other scripts' digits
        raise ImproperlyConfigured(f"{name} must be an integer, not {value!r}.")
    number = int(value.strip())
    if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
        bounds = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
        raise ImproperlyConfigured(f"{name} must be {bounds}, not {number}.")
    return number


def env_list(name: str, default: list[str] | None = None) -> list[str]:
    """A comma-separated list; blanks around items are dropped, empty items are an error."""
    value = _raw(name)
    if value is None:
        return list(default or [])
    items = [item.strip() for item in value.split(",")]
    if not all(items):
        raise ImproperlyConfigured(f"{name} has an empty item: {value!r}.")
    return items


POOL_TIMEOUT_S = 5.0


def database_from_url(name: str, url: str, *, base_dir: Path, pool_max: int) -> dict:
    """Django's DATABASES["default"] for `postgres://…`, `postgresql://…` or `sqlite:///path`."""
    parts = _split(name, url)
    if parts.scheme == "sqlite":
        path = parts.path[1:]
        if parts.netloc or not path.strip("/") or path == ":memory:" or parts.query \
                or parts.fragment:
            # An in-memory database is one per connection: runs execute on another thread.
            raise ImproperlyConfigured(
                f"{name} must name a database file (sqlite:///relative/path, relative to the "
                f"project, or sqlite:////absolute/path), not {url!r}.")
    elif parts.scheme not in {"postgres", "postgresql"}:
        raise ImproperlyConfigured(f"{name} must start with postgres://, postgresql:// or "
                                   f"sqlite:///, not {_redact(url)!r}.")
    try:
        database = _ENV.db_url_config(url.split("?", 1)[0])
    except ValueError:
        raise ImproperlyConfigured(f"{name} has a bad port: {_redact(url)!r}.") from None
    if database["ENGINE"].endswith("sqlite3"):
        return sqlite_database(str(base_dir / database["NAME"]))  # absolute stays absolute
    if not database["NAME"]:
        raise ImproperlyConfigured(f"{name} names no database: {_redact(url)!r}.")
    # Django's own psycopg pool; it needs CONN_MAX_AGE = 0 (the default), which it owns.
    # A request waits at most POOL_TIMEOUT_S for a connection, then answers 503 overloaded
    # (flows/api/exceptions.py): never a hang of psycopg's default 30 s.
    options: dict = {"pool": {"min_size": min(4, pool_max), "max_size": pool_max,
                              "timeout": POOL_TIMEOUT_S}}
    options.update(_connection_parameters(name, parts.query))  # e.g. ?sslmode=require
    # Django's backend, with each pooled connection checked as it is taken (see there).
    return {**database, "ENGINE": "astron.postgresql", "PORT": str(database["PORT"] or ""),
            "OPTIONS": options}


# libpq connection parameters a DATABASE_URL may carry (?sslmode=require&…); anything else
# would reach psycopg's pool unchecked and fail at the first query, not at start.
LIBPQ_PARAMETERS = frozenset({
    "sslmode", "sslrootcert", "sslcert", "sslkey", "sslpassword", "sslcrl", "sslcompression",
    "sslsni", "ssl_min_protocol_version", "ssl_max_protocol_version", "requiressl",
    "connect_timeout", "application_name", "target_session_attrs", "options",
    "keepalives", "keepalives_idle", "keepalives_interval", "keepalives_count",
    "tcp_user_timeout", "gssencmode", "channel_binding", "krbsrvname", "service",
    "passfile", "load_balance_hosts",
})


def _connection_parameters(name: str, query: str) -> dict[str, str]:
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise ImproperlyConfigured(f"{name} has a malformed query string: {query!r}.") from None
    parameters: dict[str, str] = {}
    for key, value in pairs:
        if key not in LIBPQ_PARAMETERS:
            raise ImproperlyConfigured(
                f"{name}: {key!r} is not a PostgreSQL connection parameter this URL may set "
                f"({', '.join(sorted(LIBPQ_PARAMETERS))}).")
        if not value:
            raise ImproperlyConfigured(f"{name}: the parameter {key!r} has no value.")
        if key in parameters:
            raise ImproperlyConfigured(f"{name}: the parameter {key!r} is given twice.")
        parameters[key] = value
    return parameters


def sqlite_database(path: str) -> dict:
    return {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": path,
        "OPTIONS": {
            # WAL lets readers go on while one writer writes; IMMEDIATE takes the write lock
            # when a transaction starts, so concurrent writers wait (busy_timeout) instead of
            # failing with "database is locked" when a read transaction tries to upgrade.
            "init_command": (
                "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=20000;"
            ),
            "transaction_mode": "IMMEDIATE",
        },
    }


def redis_urls(name: str, url: str) -> tuple[str, str]:
    """The URLs of database N (cache) and N+1 (channel layer) for `redis://host:port/N`."""
    parts = _split(name, url)
    if parts.scheme not in {"redis", "rediss"} or not parts.hostname:
        raise ImproperlyConfigured(
            f"{name} must look like redis://host:port/N, not {_redact(url)!r}."
        )
    if parts.query or parts.fragment:
        # redis-py would let ?db= override the path: the cache and the channel layer would
        # share one database, and other options would fail only at the first command.
        raise ImproperlyConfigured(
            f"{name} takes no query string or fragment: redis://host:port/N, not "
            f"{_redact(url)!r}.")
    number = parts.path.strip("/") or "0"
    if not (number.isascii() and number.isdigit()):
        raise ImproperlyConfigured(f"{name}: the database must be a number, not {number!r}.")
    try:
        parts.port  # noqa: B018  (raises on a malformed port)
    except ValueError:
        raise ImproperlyConfigured(f"{name} has a bad port: {_redact(url)!r}.") from None
    cache_db, channels_db = int(number), int(number) + 1
    return (
        urlunsplit(parts._replace(path=f"/{cache_db}")),
        urlunsplit(parts._replace(path=f"/{channels_db}")),
    )


def broker_url(name: str, url: str | None) -> str:
    """A Celery broker's URL: RabbitMQ (`amqp://`, `amqps://`) or Redis (`redis://`,
    `rediss://`)."""
    if not url:
        raise ImproperlyConfigured(
            f"{name} is required with RUN_EXECUTOR=celery: amqp://user:password@host:5672// "
            "(RabbitMQ) or redis://host:port/N.")
    parts = _split(name, url)
    if parts.scheme not in {"amqp", "amqps", "pyamqp", "redis", "rediss"} or not parts.hostname:
        raise ImproperlyConfigured(
            f"{name} must look like amqp://user:password@host:5672// or redis://host:port/N, "
            f"not {_redact(url)!r}.")
    try:
        parts.port  # noqa: B018  (raises on a malformed port)
    except ValueError:
        raise ImproperlyConfigured(f"{name} has a bad port: {_redact(url)!r}.") from None
    return url


def secrets_keys(name: str, value: str | None) -> list[str]:
    """The keys of a comma-separated list, each at least 32 characters; [] when unset."""
    if not value or not value.strip():
        return []
    keys = [key.strip() for key in value.split(",")]
    for position, key in enumerate(keys, 1):
        if len(key) < 32:
            raise ImproperlyConfigured(
                f"{name}: key {position} of {len(keys)} has {len(key)} characters; each key "
                "needs at least 32")
    return keys


def secret_key_from_file(path: Path) -> str:
    """Read the key in `path`, generating it first (mode 600) if there is none."""
    if not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Write a temporary file and link it into place, so that two processes starting at
        # once agree on one key and neither reads a half-written file.
        temporary = path.with_name(f".{path.name}.{os.getpid()}")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(descriptor, "w", encoding="ascii") as file:
                file.write(secrets.token_urlsafe(50) + "\n")
            os.link(temporary, path)
        except FileExistsError:
            pass
        finally:
            temporary.unlink(missing_ok=True)
    key = path.read_text(encoding="ascii").strip()
    if len(key) < 50:
        raise ImproperlyConfigured(f"{path} holds a key shorter than 50 characters.")
    return key


def _split(name: str, url: str):
    try:
        return urlsplit(url)
    except ValueError:
        raise ImproperlyConfigured(f"{name} is not a valid URL.") from None


def _redact(url: str) -> str:
    """The URL without its password, for error messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


_RATE_UNITS = {"second": 1, "minute": 60, "hour": 3600}


def env_rate(name: str, default: str) -> str:
    """A request rate `<count>/<second|minute|hour>`, as DRF's throttles read it."""
    value = env_str(name, default)
    count, _, unit = value.partition("/")
    if not (count.isascii() and count.isdigit()) or int(count) < 1 or unit not in _RATE_UNITS:
        raise ImproperlyConfigured(
            f"{name} must look like 1200/minute (a count, then second, minute or hour), "
            f"not {value!r}.")
    return value


def env_json_object(name: str) -> dict:
    """A JSON object (e.g. LLM_PROVIDERS); unset gives {}."""
    import json

    value = env_str(name)
    if value is None:
        return {}
    def no_repeats(pairs: list[tuple[str, object]]) -> dict:
        keys = [key for key, _ in pairs]
        repeated = sorted({key for key in keys if keys.count(key) > 1})
        if repeated:
            raise ImproperlyConfigured(f"{name} names {', '.join(map(repr, repeated))} twice.")
        return dict(pairs)

    try:
        parsed = json.loads(value, object_pairs_hook=no_repeats)
    except json.JSONDecodeError as error:
        raise ImproperlyConfigured(f"{name} is not valid JSON: {error.msg}.") from error
    if not isinstance(parsed, dict):
        raise ImproperlyConfigured(f"{name} must be a JSON object.")
    return parsed


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = env_str(name, default)
    if value not in choices:
        raise ImproperlyConfigured(f"{name} must be one of {', '.join(choices)}, not {value!r}.")
    return value


def env_number(name: str, default: float, minimum: float = 0,
               maximum: float = math.inf) -> float:
    value = env_str(name)
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError:
        number = float("nan")
    if not (minimum <= number <= maximum and math.isfinite(number)):
        bounds = f"between {minimum:g} and {maximum:g}" if math.isfinite(maximum) \
            else f"of at least {minimum:g}"
        raise ImproperlyConfigured(f"{name} must be a number {bounds}, not {value!r}.")
    return number


_HOST_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")


def _is_host_name(text: str) -> bool:
    labels = text.lower().removesuffix(".").split(".")
    return len(text) <= 253 and all(_HOST_LABEL.fullmatch(label) for label in labels)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text[1:-1] if text.startswith("[") and text.endswith("]") else text)
    except ValueError:
        return False
    return True


def allowed_hosts(name: str, hosts: list[str]) -> list[str]:
    """Django's ALLOWED_HOSTS entries: a host name, `.domain` (it and its subdomains), `*`, or
    an IP address (IPv6 in brackets). A URL or a port there would refuse every request."""
    for host in hosts:
        bare = host[1:] if host.startswith(".") else host
        if host != "*" and not (_is_host_name(bare) or (bare == host and _is_ip(host))):
            raise ImproperlyConfigured(
                f"{name}: {host!r} is not a host name (no scheme, port or path: e.g. "
                "example.com, .example.com, 127.0.0.1, [::1] or *).")
    return hosts


def trusted_origins(name: str, origins: list[str]) -> list[str]:
    """CSRF_TRUSTED_ORIGINS entries: scheme://host[:port], the host possibly `*.domain`."""
    for origin in origins:
        parts = _split(name, origin)
        host = parts.hostname or ""
        try:
            parts.port  # noqa: B018 (raises on a malformed port)
        except ValueError:
            host = ""
        if host.startswith("*."):
            host = host[2:]
        if parts.scheme not in {"http", "https"} or parts.path or parts.query \
                or parts.fragment or parts.username is not None \
                or not (_is_host_name(host) or _is_ip(host)):
            raise ImproperlyConfigured(
                f"{name}: {origin!r} is not an origin: http:// or https://, a host and "
                "perhaps a port, nothing after (e.g. https://astron.example.com).")
    return origins


def http_allow_hosts(name: str, hosts: list[str]) -> list[str]:
    """Host names (or addresses) the `http` node may reach although they are private; checked
    as the node will compare them (engine/net/policy.py), so a typo stops the start."""
    from engine.net.policy import normalize_host

    for host in hosts:
        try:
            normalized = normalize_host(host)
        except ValueError:
            normalized = ""
        if not (_is_host_name(normalized) or _is_ip(normalized)):
            raise ImproperlyConfigured(
                f"{name}: {host!r} is not a host name or an IP address (no scheme, port, path "
                "or wildcard: e.g. internal.example.com or 10.0.0.5).")
    return hosts


def llm_providers(name: str) -> dict:
    """LLM_PROVIDERS, checked as the runs will read it (fields, URLs, the key variables set),
    so a mistake stops the start rather than every run that calls a model."""
    from engine.llm import providers_from_config
    from engine.llm.registry import ProviderConfigError

    config = env_json_object(name)
    try:
        providers_from_config(config, os.environ)
    except (ProviderConfigError, ValueError) as error:
        raise ImproperlyConfigured(str(error)) from None
    return config
