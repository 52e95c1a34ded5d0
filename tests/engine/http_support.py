"""Helpers of the `http` node tests (test_http_*.py); their local servers and clients are
fixtures in conftest.py."""

from __future__ import annotations

from dataclasses import replace

from engine.ports import Services
from engine.testing import run_document

LOCAL = ["127.0.0.1", "localhost"]
KEY_RUN = "run-1"


def http_flow(params, *, retry=None, start_inputs=None, node_inputs=None, on_error=None,
              default=None):
    fetch = {"id": "fetch", "type": "http", "params": params}
    if retry is not None:
        fetch["retry"] = {"backoff_ms": 0, "jitter": False, **retry}
    if node_inputs is not None:
        fetch["inputs"] = node_inputs
    if on_error is not None:
        fetch["on_error"] = on_error
    if default is not None:
        fetch["default"] = default
    declared = {name: {"type": kind} for name, kind in (start_inputs or {}).items()}
    return {
        "dsl": "astron/v1", "name": "http test",
        "nodes": [
            {"id": "start", "type": "start", "params": {"inputs": declared}},
            fetch,
            {"id": "end", "type": "end", "inputs": {"status": "{{fetch.status}}",
                                                    "headers": "{{fetch.headers}}",
                                                    "body": "{{fetch.body}}"}},
        ],
        "edges": [{"from": "start", "to": "fetch"}, {"from": "fetch", "to": "end"}],
    }


async def run_http(http_client, params, inputs=None, value_max_bytes=None, **kw):
    start_inputs = kw.pop("start_inputs", None)
    if start_inputs is None and inputs:
        start_inputs = {name: "any" for name in inputs}
    doc = http_flow(params, start_inputs=start_inputs, **kw)
    services = Services(http=http_client) if http_client is not None else None
    if value_max_bytes is not None:
        services = replace(services or Services(), value_max_bytes=value_max_bytes)
    result, events = await run_document(doc, inputs or {}, services=services, run_id=KEY_RUN)
    return result, events


def error_of(result):
    assert result.status == "failed", result.outputs
    return result.error
