"""Fixtures of the platform's tests: the personas of factories.py and their API clients."""

import pytest
from django.contrib.auth.models import User
from django.core.cache import cache
from django.test import Client

from flows.execution.executor import executor

from . import factories


@pytest.fixture
def owner(db):
    return factories.user("ada")


@pytest.fixture
def outsider(db):
    return factories.user("mallory")


@pytest.fixture
def staff(db):
    return factories.user("grace", staff=True)


@pytest.fixture
def api(owner):
    """The owner's API client (Token key)."""
    return factories.api_client(owner)


@pytest.fixture
def outsider_api(outsider):
    return factories.api_client(outsider)


@pytest.fixture
def anonymous():
    return factories.api_client()


@pytest.fixture
def staff_client(db, client):
    """A logged-in superuser; no password, so that no test pays for hashing one."""
    client.force_login(User.objects.create_superuser("staff", password=None))
    return client


@pytest.fixture
def browser(owner):
    """The owner signed in to the pages (a session, as a browser has)."""
    session = Client()
    session.force_login(owner)
    return session


@pytest.fixture(autouse=True)
def fresh_request_budgets():
    """Each test starts with no request counted against the rate: users of earlier tests
    may have had the same ids (and anonymous requests count by address)."""
    cache.clear()


@pytest.fixture(autouse=True)
def no_executor_left_running():
    """Every test's runs stop with it (interrupted, connections closed) before its database
    is flushed; the next test that submits a run starts the executor again."""
    yield
    executor.stop()


@pytest.fixture
def stopped_executor():
    """For tests whose runs execute: the executor stops (runs interrupted, connections closed)
    before the database is flushed; the next submit starts it again."""
    yield executor
    executor.stop()


@pytest.fixture(autouse=True, scope="session")
def executor_stopped_at_the_end(django_db_setup, django_db_blocker):
    """Stops the executor before the test database is dropped: it depends on the database's
    setup, so it is torn down first (an autouse fixture alone may be set up before it, and
    then the executor's heartbeat outlived the database and opened a pool on a dropped one)."""
    yield
    with django_db_blocker.unblock():
        executor.stop()
