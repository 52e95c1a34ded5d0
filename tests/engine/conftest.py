"""Engine tests marked `virtual_time` run on a loop whose clock jumps to the next timer
whenever nothing is ready (engine/testing.py): sleeps, timeouts and deadlines take no real
time, and durations are exact. The runners of runflows.py hand the engine the same clock.
Tests that talk to real sockets or processes keep asyncio's own loop."""

import asyncio

import pytest

from engine.net import GuardedHttpClient
from engine.testing import VirtualTimeLoop

from .http_support import LOCAL
from .localhttp import LocalServers


def pytest_asyncio_loop_factories(config, item):
    if item.get_closest_marker("virtual_time") is not None:
        return {"virtual_time": VirtualTimeLoop}
    return {"asyncio": asyncio.new_event_loop}


# --- the http tests' local servers and clients (test_http_*.py) -----------------------------


@pytest.fixture(scope="module")
def servers():
    local = LocalServers()
    yield local
    local.close()


@pytest.fixture
def server(servers):
    servers.recorder.reset()
    return servers


@pytest.fixture
async def client():
    """A client whose allow-list lets the tests reach the local server."""
    async with GuardedHttpClient(allow_hosts=LOCAL) as guarded:
        yield guarded


@pytest.fixture
async def strict():
    """A client with no allow-list: the production default."""
    async with GuardedHttpClient() as guarded:
        yield guarded
