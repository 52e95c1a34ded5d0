"""The keys of the server's LLM providers are secrets no run records (engine/redaction.py)."""

import pytest

pytestmark = pytest.mark.django_db


def test_the_keys_of_configured_providers_are_redacted_from_what_runs_record(settings,
                                                                             monkeypatch):
    from flows.execution.world import build_world

    monkeypatch.setenv("TEST_MODEL_KEY", "sk-test-9f8e7d6c5b4a")
    settings.LLM_PROVIDERS = {"local": {"base_url": "http://127.0.0.1:9/v1",
                                        "api_key_env": "TEST_MODEL_KEY"}}

    redactor = build_world().redactor

    assert redactor.text("key sk-test-9f8e7d6c5b4a") == "key [redacted]"
