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


def broker_answers() -> bool:
    import socket

    try:
        socket.create_connection(("127.0.0.1", 5672), timeout=1).close()
    except OSError:
        return False
    return True


@pytest.fixture
def celery_mode(settings):
    """RUN_EXECUTOR=celery for /readyz, with Celery's broker URL put back afterwards."""
    from celery import current_app

    settings.RUN_EXECUTOR = "celery"
    before = current_app.conf.broker_url
    yield current_app.conf
    current_app.conf.broker_url = before


@pytest.mark.django_db
def test_readyz_is_503_when_the_broker_does_not_answer_in_the_celery_mode(client, celery_mode):
    celery_mode.broker_url = "amqp://guest:guest@127.0.0.1:1//"  # nothing listens there

    response = client.get("/readyz")

    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "not_ready" and "broker" in error["message"]


@pytest.mark.django_db
@pytest.mark.skipif(not broker_answers(), reason="no RabbitMQ on 127.0.0.1:5672")
def test_readyz_is_ok_when_the_broker_answers_in_the_celery_mode(client, celery_mode):
    celery_mode.broker_url = "amqp://guest:guest@127.0.0.1:5672//"

    assert client.get("/readyz").status_code == 200
