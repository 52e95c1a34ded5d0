import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from astron.env import (
    allowed_hosts,
    broker_url,
    database_from_url,
    env_bool,
    env_int,
    env_json_object,
    env_list,
    env_number,
    env_rate,
    env_str,
    http_allow_hosts,
    llm_providers,
    redis_urls,
    secret_key_from_file,
    trusted_origins,
)

BASE_DIR = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("reader", "name", "value"),
    [
        (lambda: env_bool("ASTRON_TEST_FLAG", False), "ASTRON_TEST_FLAG", "maybe"),
        (lambda: env_int("ASTRON_TEST_COUNT", 2), "ASTRON_TEST_COUNT", "two"),
        (lambda: env_int("ASTRON_TEST_COUNT", 2, minimum=1), "ASTRON_TEST_COUNT", "0"),
        (lambda: env_list("ASTRON_TEST_HOSTS"), "ASTRON_TEST_HOSTS", "a,,b"),
        # int() itself would take these: digits of other scripts, underscores.
        (lambda: env_int("ASTRON_TEST_COUNT", 2), "ASTRON_TEST_COUNT", "1_0"),
        (lambda: env_int("ASTRON_TEST_COUNT", 2), "ASTRON_TEST_COUNT", "\uff11\uff12"),
        (lambda: env_rate("ASTRON_TEST_RATE", "1/second"), "ASTRON_TEST_RATE", "\u0661/minute"),
        (lambda: env_number("ASTRON_TEST_SECONDS", 30, minimum=1), "ASTRON_TEST_SECONDS",
         "inf"),
        (lambda: env_number("ASTRON_TEST_SECONDS", 30, minimum=1, maximum=3600),
         "ASTRON_TEST_SECONDS", "1e300"),
        (lambda: env_json_object("ASTRON_TEST_JSON"), "ASTRON_TEST_JSON", '{"a": 1, "a": 2}'),
        (lambda: allowed_hosts("ALLOWED_HOSTS", env_list("ALLOWED_HOSTS")), "ALLOWED_HOSTS",
         "http://a.example"),
        (lambda: allowed_hosts("ALLOWED_HOSTS", env_list("ALLOWED_HOSTS")), "ALLOWED_HOSTS",
         "a.example:8000"),
        (lambda: trusted_origins("CSRF_TRUSTED_ORIGINS", env_list("CSRF_TRUSTED_ORIGINS")),
         "CSRF_TRUSTED_ORIGINS", "https://"),
        (lambda: trusted_origins("CSRF_TRUSTED_ORIGINS", env_list("CSRF_TRUSTED_ORIGINS")),
         "CSRF_TRUSTED_ORIGINS", "https://a.example/path"),
        (lambda: trusted_origins("CSRF_TRUSTED_ORIGINS", env_list("CSRF_TRUSTED_ORIGINS")),
         "CSRF_TRUSTED_ORIGINS", "a.example"),
        (lambda: http_allow_hosts("HTTP_ALLOW_HOSTS", env_list("HTTP_ALLOW_HOSTS")),
         "HTTP_ALLOW_HOSTS", "http://a.example"),
        (lambda: http_allow_hosts("HTTP_ALLOW_HOSTS", env_list("HTTP_ALLOW_HOSTS")),
         "HTTP_ALLOW_HOSTS", "a.example:8080"),
        (lambda: http_allow_hosts("HTTP_ALLOW_HOSTS", env_list("HTTP_ALLOW_HOSTS")),
         "HTTP_ALLOW_HOSTS", "*.a.example"),
        (lambda: llm_providers("LLM_PROVIDERS"), "LLM_PROVIDERS", '{"o": {"base_url": "ftp://x"}}'),
        (lambda: llm_providers("LLM_PROVIDERS"), "LLM_PROVIDERS",
         '{"o": {"base_url": "https://api.example/v1", "colour": "red"}}'),
        (lambda: llm_providers("LLM_PROVIDERS"), "LLM_PROVIDERS",
         '{"o": {"base_url": "https://api.example/v1", "api_key_env": "ASTRON_TEST_NO_KEY"}}'),
    ],
)
def test_malformed_values_are_refused_with_the_variables_name(monkeypatch, reader, name, value):
    monkeypatch.setenv(name, value)

    with pytest.raises(ImproperlyConfigured, match=name):
        reader()


def test_well_formed_hosts_origins_and_providers_pass(monkeypatch):
    assert allowed_hosts("H", ["astron.example", ".example.com", "10.0.0.5", "[::1]", "*"])
    assert trusted_origins("O", ["https://astron.example", "http://127.0.0.1:8000",
                                 "https://*.example.com"])
    assert http_allow_hosts("A", ["internal.example", "10.0.0.5", "::1", "bücher.example"])
    monkeypatch.setenv("ASTRON_TEST_KEY", "sk-test")
    monkeypatch.setenv("LLM_PROVIDERS", '{"local": {"base_url": "http://127.0.0.1:8080/v1", '
                                        '"api_key_env": "ASTRON_TEST_KEY"}}')
    assert set(llm_providers("LLM_PROVIDERS")) == {"local"}


def test_an_empty_secret_file_is_refused_rather_than_taken_for_unset(monkeypatch, tmp_path):
    empty = tmp_path / "empty"
    empty.write_text("\n")
    monkeypatch.delenv("ASTRON_TEST_SECRET", raising=False)
    monkeypatch.setenv("ASTRON_TEST_SECRET_FILE", str(empty))

    with pytest.raises(ImproperlyConfigured, match="ASTRON_TEST_SECRET_FILE"):
        env_str("ASTRON_TEST_SECRET", "fallback")


def test_well_formed_values_are_parsed(monkeypatch):
    monkeypatch.setenv("ASTRON_TEST_FLAG", "Yes")
    monkeypatch.setenv("ASTRON_TEST_COUNT", " 7 ")
    monkeypatch.setenv("ASTRON_TEST_HOSTS", "a.example, b.example")
    monkeypatch.delenv("ASTRON_TEST_UNSET", raising=False)

    assert env_bool("ASTRON_TEST_FLAG", False) is True
    assert env_int("ASTRON_TEST_COUNT", 2) == 7
    assert env_list("ASTRON_TEST_HOSTS") == ["a.example", "b.example"]
    assert env_str("ASTRON_TEST_UNSET", "fallback") == "fallback"


def test_a_secret_can_come_from_a_file(monkeypatch, tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("s3cret\n")
    monkeypatch.delenv("ASTRON_TEST_SECRET", raising=False)
    monkeypatch.setenv("ASTRON_TEST_SECRET_FILE", str(secret))

    assert env_str("ASTRON_TEST_SECRET") == "s3cret"


@pytest.mark.parametrize(
    "url", ["mysql://root@localhost/astron", "postgres://127.0.0.1:5432/", "sqlite://relative"]
)
def test_unsupported_database_urls_are_refused(url):
    with pytest.raises(ImproperlyConfigured, match="DATABASE_URL"):
        database_from_url("DATABASE_URL", url, base_dir=BASE_DIR, pool_max=20)


def test_postgres_url_uses_psycopg_with_djangos_pool():
    database = database_from_url(
        "DATABASE_URL",
        "postgresql://astron:p%40ss@db.internal:6543/astron?sslmode=require",
        base_dir=BASE_DIR,
        pool_max=7,
    )

    assert database["ENGINE"] == "astron.postgresql"
    assert (database["NAME"], database["USER"], database["PASSWORD"]) == (
        "astron",
        "astron",
        "p@ss",
    )
    assert (database["HOST"], database["PORT"]) == ("db.internal", "6543")
    assert database["OPTIONS"]["pool"]["max_size"] == 7
    assert database["OPTIONS"]["sslmode"] == "require"


@pytest.mark.parametrize("query", ["?pool=false", "?foo=bar", "?sslmode", "?sslmode=a&sslmode=b"])
def test_a_database_url_takes_only_connection_parameters_postgresql_knows(query):
    with pytest.raises(ImproperlyConfigured, match="DATABASE_URL"):
        database_from_url("DATABASE_URL", f"postgres://127.0.0.1:5432/astron{query}",
                          base_dir=BASE_DIR, pool_max=20)


def test_an_in_memory_sqlite_database_is_refused():
    """One per connection: runs execute on another thread and would see none of it."""
    with pytest.raises(ImproperlyConfigured, match="DATABASE_URL"):
        database_from_url("DATABASE_URL", "sqlite:///:memory:", base_dir=BASE_DIR, pool_max=20)


@pytest.mark.parametrize("url", ["redis://127.0.0.1:6379/3?db=5", "redis://127.0.0.1:6379/3#x",
                                 "redis://127.0.0.1:6379/\u0663"])
def test_a_redis_url_is_only_host_port_and_database(url):
    with pytest.raises(ImproperlyConfigured, match="REDIS_URL"):
        redis_urls("REDIS_URL", url)


def test_redis_url_gives_the_cache_database_n_and_the_channel_layer_n_plus_one():
    assert redis_urls("REDIS_URL", "redis://127.0.0.1:6379/3") == (
        "redis://127.0.0.1:6379/3",
        "redis://127.0.0.1:6379/4",
    )
    with pytest.raises(ImproperlyConfigured, match="REDIS_URL"):
        redis_urls("REDIS_URL", "redis://127.0.0.1:6379/cache")


def test_secret_key_is_generated_once_with_mode_600_and_reused(tmp_path):
    path = tmp_path / "data" / "secret_key"

    first = secret_key_from_file(path)

    assert len(first) >= 50
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert secret_key_from_file(path) == first


def test_a_malformed_setting_stops_the_process_naming_the_variable():
    environment = {**os.environ, "DEBUG": "maybe", "DJANGO_SETTINGS_MODULE": "astron.settings"}

    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=BASE_DIR,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode != 0
    assert "DEBUG must be one of" in result.stderr


def test_a_bad_http_allow_list_stops_the_start_instead_of_every_run():
    environment = {**os.environ, "HTTP_ALLOW_HOSTS": "http://a.example",
                   "DJANGO_SETTINGS_MODULE": "astron.settings"}

    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=BASE_DIR,
                            env=environment, capture_output=True, text=True, timeout=60)

    assert result.returncode != 0
    assert "HTTP_ALLOW_HOSTS: 'http://a.example' is not a host name" in result.stderr


@pytest.mark.parametrize("key", [" " * 60, "a" * 49, "ab" * 40])
def test_a_secret_key_that_is_short_or_not_random_stops_the_start(key):
    environment = {**os.environ, "SECRET_KEY": key, "DJANGO_SETTINGS_MODULE": "astron.settings"}

    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=BASE_DIR,
                            env=environment, capture_output=True, text=True, timeout=60)

    assert result.returncode != 0
    assert "SECRET_KEY must be at least 50 characters long" in result.stderr


@pytest.mark.parametrize("value, message", [
    ("short", "key 1 of 1 has 5 characters"),
    ("k" * 40 + ",tiny", "key 2 of 2 has 4 characters"),
])
def test_a_secrets_key_shorter_than_32_characters_stops_the_start(value, message):
    environment = {**os.environ, "SECRETS_KEY": value, "DJANGO_SETTINGS_MODULE": "astron.settings"}

    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=BASE_DIR,
                            env=environment, capture_output=True, text=True, timeout=60)

    assert result.returncode != 0
    assert f"SECRETS_KEY: {message}" in result.stderr


def test_without_secrets_key_a_server_on_postgresql_does_not_start():
    environment = {k: v for k, v in os.environ.items() if k != "SECRETS_KEY"}
    environment.update(DATABASE_URL="postgres://postgres@127.0.0.1:5432/nowhere",
                       SECRET_KEY="secret-key-material-0123456789-abcdefghijklmnopqrstuv",
                       DEBUG="false",
                       DJANGO_SETTINGS_MODULE="astron.settings")

    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=BASE_DIR,
                            env=environment, capture_output=True, text=True, timeout=60)

    assert result.returncode != 0
    assert "SECRETS_KEY is required when DATABASE_URL is set" in result.stderr


def test_sqlite_runs_in_wal_mode_with_a_busy_timeout_and_immediate_transactions(tmp_path):
    """Readers go on while one writer writes; concurrent writers wait instead of failing."""
    database = database_from_url("DATABASE_URL", f"sqlite:///{tmp_path}/a.sqlite3",
                                 base_dir=BASE_DIR, pool_max=20)

    assert database["ENGINE"] == "django.db.backends.sqlite3"
    assert "journal_mode=WAL" in database["OPTIONS"]["init_command"]
    assert "busy_timeout=" in database["OPTIONS"]["init_command"]
    assert database["OPTIONS"]["transaction_mode"] == "IMMEDIATE"


@pytest.mark.parametrize("url", [None, "", "http://127.0.0.1:5672//", "amqp://", "amqp://h:x//",
                                 "kafka://127.0.0.1:9092"])
def test_a_bad_broker_url_is_refused_with_the_variables_name(url):
    with pytest.raises(ImproperlyConfigured, match="CELERY_BROKER_URL"):
        broker_url("CELERY_BROKER_URL", url)


@pytest.mark.parametrize("url", ["amqp://guest:guest@127.0.0.1:5672//",
                                 "amqps://u:p@broker.example:5671/vhost",
                                 "redis://127.0.0.1:6379/2"])
def test_rabbitmq_and_redis_broker_urls_are_taken(url):
    assert broker_url("CELERY_BROKER_URL", url) == url


def test_the_celery_mode_without_redis_stops_at_start_naming_what_is_missing(tmp_path):
    environment = {key: value for key, value in os.environ.items()
                   if key not in ("REDIS_URL", "DATABASE_URL")}
    environment.update(RUN_EXECUTOR="celery", CELERY_BROKER_URL="amqp://g:g@127.0.0.1:5672//",
                       DJANGO_SETTINGS_MODULE="astron.settings")
    started = subprocess.run([sys.executable, "-c", "import django; django.setup()"],
                             cwd=Path(__file__).resolve().parents[2], env=environment,
                             capture_output=True, text=True, timeout=60)
    assert started.returncode != 0
    assert "RUN_EXECUTOR=celery needs REDIS_URL" in started.stderr
