import pytest
from django.db.utils import OperationalError


def test_healthz_answers_ok_without_touching_the_database(client):
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_is_ok_when_the_database_answers(client):
    response = client.get("/readyz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


class UnreachableDatabase:
    def ensure_connection(self):
        raise OperationalError("connection refused")

    def cursor(self):
        raise OperationalError("connection refused")


def test_readyz_is_503_with_the_error_shape_when_the_database_is_down(client, monkeypatch):
    monkeypatch.setattr("flows.views.connection", UnreachableDatabase())

    response = client.get("/readyz")

    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "not_ready"
    assert "database" in error["message"]
    assert error["details"] == []


def test_health_endpoints_refuse_writes_in_the_error_shape(client):
    response = client.post("/healthz")

    assert response.status_code == 405 and response["Allow"] == "GET, HEAD"
    assert response.json()["error"]["code"] == "method_not_allowed"


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_an_orchestrator_probing_the_process_by_its_address_gets_an_answer(path):
    """Kubernetes sends `Host: <pod ip>:<port>`, which ALLOWED_HOSTS does not list."""
    from django.test import Client

    response = Client(HTTP_HOST="10.1.2.3:8000").get(path)

    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_other_paths_still_check_the_host():
    from django.test import Client

    assert Client(HTTP_HOST="10.1.2.3:8000").get("/api/dsl/schema/").status_code == 400



@pytest.mark.django_db
def test_readyz_is_503_when_redis_is_configured_and_does_not_answer(client, settings):
    from .cache_helpers import DEAD_REDIS

    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    settings.CACHES = DEAD_REDIS

    response = client.get("/readyz")

    assert response.status_code == 503
    assert response.json()["error"]["code"] == "not_ready"
    assert "Redis" in response.json()["error"]["message"]
