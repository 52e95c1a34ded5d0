import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from astron.env import (
    database_from_url,
    env_bool,
    env_int,
    env_list,
    env_str,
    redis_urls,
    secret_key_from_file,
)

BASE_DIR = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("reader", "name", "value"),
    [
        (lambda: env_bool("ASTRON_TEST_FLAG", False), "ASTRON_TEST_FLAG", "maybe"),
        (lambda: env_int("ASTRON_TEST_COUNT", 2), "ASTRON_TEST_COUNT", "two"),
        (lambda: env_int("ASTRON_TEST_COUNT", 2, minimum=1), "ASTRON_TEST_COUNT", "0"),
        (lambda: env_list("ASTRON_TEST_HOSTS"), "ASTRON_TEST_HOSTS", "a,,b"),
    ],
)
def test_malformed_values_are_refused_with_the_variables_name(monkeypatch, reader, name, value):
    monkeypatch.setenv(name, value)

    with pytest.raises(ImproperlyConfigured, match=name):
        reader()


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

    assert database["ENGINE"] == "django.db.backends.postgresql"
    assert (database["NAME"], database["USER"], database["PASSWORD"]) == (
        "astron",
        "astron",
        "p@ss",
    )
    assert (database["HOST"], database["PORT"]) == ("db.internal", "6543")
    assert database["OPTIONS"]["pool"]["max_size"] == 7
    assert database["OPTIONS"]["sslmode"] == "require"


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
