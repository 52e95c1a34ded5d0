"""Shared test setup. Django settings come from pyproject.toml (DJANGO_SETTINGS_MODULE);
with no environment variables set the tests run embedded, on a SQLite file in data/."""


def pytest_report_header(config):
    """Say which database, cache and channel layer this run tests against."""
    from django.conf import settings

    database = settings.DATABASES["default"]
    cache = settings.CACHES["default"]["BACKEND"].rsplit(".", 1)[-1]
    layer = settings.CHANNEL_LAYERS["default"]["BACKEND"].rsplit(".", 1)[-1]
    engine = database["ENGINE"].rsplit(".", 1)[-1]
    name = database.get("TEST", {}).get("NAME") or f"test_{database['NAME']}"
    return f"astron: database {engine} ({name}), cache {cache}, channel layer {layer}"
