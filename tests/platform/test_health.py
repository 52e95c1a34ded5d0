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


def test_health_endpoints_refuse_writes(client):
    assert client.post("/healthz").status_code == 405
