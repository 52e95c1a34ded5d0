"""The secrets store (docs/secrets.md): encrypted at rest, never shown, refused at a run's start
when missing, and never recorded by a run — whatever tries to leak it.

The leak tests run a flow against a local server that echoes back what it receives (headers,
query, and on /deny a 401 whose body quotes the Authorization header), with a `template` that
renders the response and an end node that answers with it: every place a run records text
is then searched for the value.
"""

from __future__ import annotations

import io
import json
import logging
import threading
from http.server import BaseHTTPRequestHandler

import pytest
from django.core.management import call_command
from django.db import connection

from flows import encryption, services
from flows.execution.executor import executor
from flows.models import NodeRun, Run, RunEvent, Secret
from flows.services import secrets as secret_store

from .factories import api_client, assert_error, reachable_server, user

pytestmark = pytest.mark.django_db(transaction=True)

KEY = "sk-live-Very$ecret/Value+42"  # with characters that JSON and URLs escape


@pytest.fixture
def echo_server(settings):
    """A local server that answers with what it received; the http node may reach it."""

    class Echo(BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path.startswith("/deny"):
                body = f"refused: {self.headers.get('Authorization')}".encode()
                self.send_response(401)
                self.send_header("Content-Type", "text/plain")
            else:
                body = json.dumps({"path": self.path, "headers": dict(self.headers)}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("X-Echo-Key", self.headers.get("X-Key", ""))
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    with reachable_server(settings, Echo) as base:
        yield base


def leaky(base: str, fail: bool = False) -> dict:
    """A flow doing its best to record the secret: sent in a header and the query, echoed
    back, rendered by a template, returned as output and answer."""
    call = {"id": "call", "type": "http",
            "params": {"url": f"{base}/{'deny' if fail else 'echo'}?key={{{{secrets.API_KEY}}}}",
                       "headers": {"Authorization": "Bearer {{secrets.API_KEY}}",
                                   "X-Key": "{{secrets.API_KEY}}"}}}
    return {"dsl": "astron/v1", "name": "Leaky", "nodes": [
        {"id": "start", "type": "start"},
        call,
        {"id": "show", "type": "template",
         "params": {"template": "seen {{call.body}} / {{call.headers}}"}},
        {"id": "end", "type": "end", "params": {"answer": "{{show.text}}"},
         "inputs": {"seen": "{{show.text}}", "body": "{{call.body}}"}},
    ], "edges": [{"from": "start", "to": "call"}, {"from": "call", "to": "show"},
                 {"from": "show", "to": "end"}]}


def finished(run_id, seconds=20) -> Run:
    executor.wait(run_id, seconds)
    return Run.objects.get(pk=run_id)


def everything_recorded(run: Run) -> str:
    """All a run left behind, as one text: its row, node runs and events."""
    rows = [Run.objects.filter(pk=run.pk).values().get()]
    rows += list(NodeRun.objects.filter(run=run).values())
    rows += list(RunEvent.objects.filter(run=run).values())
    return json.dumps(rows, default=str, ensure_ascii=False)


def leak_forms(value: str) -> list[str]:
    from urllib.parse import quote, quote_plus

    return [value, json.dumps(value)[1:-1], quote(value, safe=""), quote_plus(value)]


# --- the API --------------------------------------------------------------------------------


def test_a_secret_is_created_listed_and_never_shown(api):
    created = api.post("/api/secrets/", {"name": "API_KEY", "value": KEY,
                                          "description": "the partner's key"}, format="json")
    assert created.status_code == 201, created.content
    assert created.json()["name"] == "API_KEY"
    for answer in (created, api.get("/api/secrets/"), api.get("/api/secrets/API_KEY/")):
        assert KEY not in answer.content.decode()
        assert "value" not in json.dumps(answer.json())
    listed = api.get("/api/secrets/").json()
    assert [row["name"] for row in listed["results"]] == ["API_KEY"]
    assert set(listed["results"][0]) == {"name", "description", "created_at", "updated_at",
                                         "last_used_at"}


def test_the_value_is_stored_encrypted_and_a_dump_holds_no_plaintext(owner):
    secret_store.create_secret(owner, "API_KEY", KEY)
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM flows_secret")
        raw = json.dumps(cursor.fetchall(), default=str)
    assert KEY not in raw
    dump = io.StringIO()
    call_command("dumpdata", "flows", stdout=dump)
    assert KEY not in dump.getvalue()
    stored = Secret.objects.get(name="API_KEY")
    assert encryption.decrypt(stored.ciphertext) == KEY
    assert KEY not in repr(stored) and KEY not in str(stored)


@pytest.mark.parametrize("body, code", [
    ({"name": "api_key", "value": "x"}, "invalid_value"),
    ({"name": "9KEY", "value": "x"}, "invalid_value"),
    ({"name": "K" * 65, "value": "x"}, "invalid_value"),
    ({"name": 7, "value": "x"}, "invalid_value"),
    ({"name": "KEY", "value": ""}, "invalid_value"),
    ({"name": "KEY", "value": 42}, "invalid_value"),
    ({"name": "KEY", "value": "x" * (64 * 1024 + 1)}, "invalid_value"),
    ({"name": "KEY", "value": "x", "description": ["no"]}, "invalid_value"),
    ({"name": "KEY"}, "invalid_request"),
    ({"name": "KEY", "value": "x", "colour": "red"}, "invalid_request"),
])
def test_bad_secrets_are_refused_and_nothing_is_written(api, body, code):
    assert_error(api.post("/api/secrets/", body, format="json"), 400, code)
    assert not Secret.objects.exists()


def test_a_taken_name_is_409_and_the_first_value_stays(api, owner):
    assert api.post("/api/secrets/", {"name": "KEY", "value": "first"},
                    format="json").status_code == 201
    assert_error(api.post("/api/secrets/", {"name": "KEY", "value": "second"}, format="json"),
                 409, "name_taken")
    assert secret_store.values_for(owner.pk, ["KEY"]) == {"KEY": "first"}


def test_a_new_value_replaces_the_old_and_delete_removes_it(api, owner):
    api.post("/api/secrets/", {"name": "KEY", "value": "first"}, format="json")
    changed = api.put("/api/secrets/KEY/", {"value": "second", "description": "rotated"},
                      format="json")
    assert changed.status_code == 200 and changed.json()["description"] == "rotated"
    assert secret_store.values_for(owner.pk, ["KEY"]) == {"KEY": "second"}
    assert_error(api.put("/api/secrets/KEY/", {"value": ""}, format="json"), 400,
                 "invalid_value")
    assert secret_store.values_for(owner.pk, ["KEY"]) == {"KEY": "second"}
    assert api.delete("/api/secrets/KEY/").status_code == 204
    assert_error(api.get("/api/secrets/KEY/"), 404, "not_found")


def test_someone_elses_secret_is_not_found(api):
    stranger = user("eve")
    secret_store.create_secret(stranger, "KEY", "hers")
    assert api.get("/api/secrets/").json()["results"] == []
    for answer in (api.get("/api/secrets/KEY/"), api.delete("/api/secrets/KEY/"),
                   api.put("/api/secrets/KEY/", {"value": "mine"}, format="json")):
        assert_error(answer, 404, "not_found")
    assert secret_store.values_for(stranger.pk, ["KEY"]) == {"KEY": "hers"}


def test_secrets_need_credentials():
    assert api_client().get("/api/secrets/").status_code == 401


# --- runs -----------------------------------------------------------------------------------


def test_a_run_naming_a_missing_secret_is_refused_and_nothing_is_created(api, owner,
                                                                         echo_server):
    api.post("/api/flows/", {"slug": "leaky", "dsl": leaky(echo_server)}, format="json")
    error = assert_error(api.post("/api/flows/leaky/runs/", {"inputs": {}}, format="json"),
                         409, "missing_secret")
    assert [detail["secret"] for detail in error["details"]] == ["API_KEY"]
    assert not Run.objects.exists()


def test_nothing_a_run_records_holds_the_secret(api, owner, echo_server, caplog):
    caplog.set_level(logging.DEBUG)
    secret_store.create_secret(owner, "API_KEY", KEY)
    api.post("/api/flows/", {"slug": "leaky", "dsl": leaky(echo_server)}, format="json")
    started = api.post("/api/flows/leaky/runs/", {"inputs": {}}, format="json")
    assert started.status_code == 201, started.content
    run = finished(started.json()["id"])

    assert run.status == "succeeded", run.error
    # The server did receive the key: the request was made with it.
    assert run.outputs["body"]["headers"]["X-Key"] == "[secret:API_KEY]"
    assert "[secret:API_KEY]" in run.outputs["body"]["path"]
    assert "[secret:API_KEY]" in run.answer
    recorded = everything_recorded(run)
    assert "[secret:API_KEY]" in recorded
    for form in leak_forms(KEY):
        assert form not in recorded
        assert form not in api.get(f"/api/runs/{run.pk}/").content.decode()
        assert form not in api.get(f"/api/runs/{run.pk}/events/").content.decode()
        assert form not in caplog.text
    assert Secret.objects.get(name="API_KEY").last_used_at is not None


def test_an_http_error_that_echoes_the_key_is_recorded_without_it(api, owner, echo_server):
    secret_store.create_secret(owner, "API_KEY", KEY)
    api.post("/api/flows/", {"slug": "leaky", "dsl": leaky(echo_server, fail=True)},
             format="json")
    run = finished(api.post("/api/flows/leaky/runs/", {"inputs": {}}, format="json").json()["id"])
    assert run.status == "failed"
    assert run.error["code"] == "http_status"
    call = NodeRun.objects.get(run=run, node="call")
    assert "[secret:API_KEY]" in json.dumps(call.error)
    for form in leak_forms(KEY):
        assert form not in everything_recorded(run)


def test_metrics_hold_no_secret(api, owner, echo_server):
    staff = user("root", staff=True)
    secret_store.create_secret(owner, "API_KEY", KEY)
    api.post("/api/flows/", {"slug": "leaky", "dsl": leaky(echo_server, fail=True)},
             format="json")
    finished(api.post("/api/flows/leaky/runs/", {"inputs": {}}, format="json").json()["id"])
    metrics = api_client(staff).get("/metrics").content.decode()
    assert "astron_" in metrics
    for form in leak_forms(KEY):
        assert form not in metrics


def test_a_run_uses_the_value_the_secret_has_when_it_starts(api, owner, echo_server):
    secret_store.create_secret(owner, "API_KEY", "first-value-123")
    api.post("/api/flows/", {"slug": "leaky", "dsl": leaky(echo_server)}, format="json")
    first = finished(api.post("/api/flows/leaky/runs/", {"inputs": {}},
                              format="json").json()["id"])
    api.put("/api/secrets/API_KEY/", {"value": "second-value-456"}, format="json")
    second = finished(api.post("/api/flows/leaky/runs/", {"inputs": {}},
                               format="json").json()["id"])
    # Each run's record names the secret, and neither value appears in either.
    for run in (first, second):
        assert run.outputs["body"]["headers"]["X-Key"] == "[secret:API_KEY]"
        text = everything_recorded(run)
        assert "first-value-123" not in text and "second-value-456" not in text


def test_the_export_keeps_the_reference(api, owner, echo_server):
    secret_store.create_secret(owner, "API_KEY", KEY)
    api.post("/api/flows/", {"slug": "leaky", "dsl": leaky(echo_server)}, format="json")
    exported = api.get("/api/flows/leaky/export/").content.decode()
    assert "{{secrets.API_KEY}}" in exported and KEY not in exported


# --- keys -----------------------------------------------------------------------------------


def test_keys_rotate_the_first_encrypts_all_decrypt_and_the_command_re_encrypts(owner,
                                                                                settings):
    old, new = "o" * 16 + "ld-key-material-1234", "n" * 16 + "ew-key-material-5678"
    settings.SECRETS_KEYS = [old]
    secret_store.create_secret(owner, "API_KEY", KEY)
    written_under_old = Secret.objects.get().ciphertext

    settings.SECRETS_KEYS = [new, old]  # a new key first: the old one still decrypts
    assert secret_store.values_for(owner.pk, ["API_KEY"]) == {"API_KEY": KEY}
    out = io.StringIO()
    call_command("rotate_secrets", stdout=out)
    assert "re-encrypted 1 value(s)" in out.getvalue()
    assert Secret.objects.get().ciphertext != written_under_old

    settings.SECRETS_KEYS = [new]  # the old key removed: everything was re-encrypted
    assert secret_store.values_for(owner.pk, ["API_KEY"]) == {"API_KEY": KEY}
    settings.SECRETS_KEYS = [old]
    with pytest.raises(encryption.Undecryptable):
        encryption.decrypt(Secret.objects.get().ciphertext)


def test_a_tampered_ciphertext_is_detected_not_decrypted(owner):
    secret_store.create_secret(owner, "API_KEY", KEY)
    token = Secret.objects.get().ciphertext
    tampered = token[:-6] + ("A" if token[-6] != "A" else "B") + token[-5:]
    with pytest.raises(encryption.Undecryptable):
        encryption.decrypt(tampered)


# --- the admin ------------------------------------------------------------------------------




def test_the_admin_sets_a_value_and_never_shows_it(staff_client, owner):
    added = staff_client.post("/admin/flows/secret/add/", {
        "owner": owner.pk, "name": "API_KEY", "description": "partner", "value": KEY})
    assert added.status_code == 302, added.content.decode()[:2000]
    secret = Secret.objects.get(owner=owner, name="API_KEY")
    assert secret_store.values_for(owner.pk, ["API_KEY"]) == {"API_KEY": KEY}

    listing = staff_client.get("/admin/flows/secret/").content.decode()
    page = staff_client.get(f"/admin/flows/secret/{secret.pk}/change/").content.decode()
    assert "API_KEY" in listing and "partner" in listing
    for text in (listing, page):
        assert KEY not in text and secret.ciphertext not in text

    kept = staff_client.post(f"/admin/flows/secret/{secret.pk}/change/",
                             {"description": "still partner", "value": ""})
    assert kept.status_code == 302
    assert secret_store.values_for(owner.pk, ["API_KEY"]) == {"API_KEY": KEY}
    changed = staff_client.post(f"/admin/flows/secret/{secret.pk}/change/",
                                {"description": "rotated", "value": "new-value-999"})
    assert changed.status_code == 302
    assert secret_store.values_for(owner.pk, ["API_KEY"]) == {"API_KEY": "new-value-999"}
    history = staff_client.get(f"/admin/flows/secret/{secret.pk}/history/").content.decode()
    assert "new-value-999" not in history and KEY not in history


@pytest.mark.parametrize("fields", [
    {"name": "lower", "value": "x"}, {"name": "API_KEY", "value": ""}])
def test_the_admin_refuses_a_bad_secret_and_writes_nothing(staff_client, owner, fields):
    answer = staff_client.post("/admin/flows/secret/add/", {"owner": owner.pk, **fields})
    assert answer.status_code == 200  # the form again, with its errors
    assert not Secret.objects.exists()


def test_the_admin_refuses_a_taken_name(staff_client, owner):
    secret_store.create_secret(owner, "API_KEY", "first")
    answer = staff_client.post("/admin/flows/secret/add/",
                               {"owner": owner.pk, "name": "API_KEY", "value": "second"})
    assert answer.status_code == 200
    assert secret_store.values_for(owner.pk, ["API_KEY"]) == {"API_KEY": "first"}


# --- streamed events and spans ----------------------------------------------------------------


async def test_the_socket_streams_and_replays_the_run_without_the_secret(owner, echo_server):
    from asgiref.sync import sync_to_async
    from channels.testing import WebsocketCommunicator

    from astron.asgi import application
    from flows.services import tokens

    @sync_to_async
    def start():
        secret_store.create_secret(owner, "API_KEY", KEY)
        flow = services.create_flow(owner, leaky(echo_server), slug="leaky")
        run, _ = services.start_run(owner, flow, {})
        return run.pk, tokens.create_token(owner, "socket")[1]

    async def frames_of(run_id, key):
        ws = WebsocketCommunicator(application, f"/ws/runs/{run_id}/?after=0",
                                   headers=[(b"origin", b"http://127.0.0.1:8000")])
        connected, _ = await ws.connect(timeout=10)
        assert connected
        await ws.send_json_to({"type": "auth", "token": key})
        texts = []
        while True:
            output = await ws.receive_output(30)
            if output["type"] == "websocket.close":
                await ws.disconnect()  # the consumer's task ends here, not at the loop's close
                return texts
            texts.append(output["text"])

    run_id, key = await start()
    live = await frames_of(run_id, key)  # from the start: the live tail, mostly
    replayed = await frames_of(run_id, key)  # after the end: all of it from the table
    assert '"run.finished"' in live[-1] and replayed == live
    for form in leak_forms(KEY):
        assert all(form not in text for text in live)
    assert any("[secret:API_KEY]" in text for text in live)


def test_spans_hold_no_secret(owner, echo_server):
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from tracing import setup

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    setup.install(provider, database=False)
    try:
        # An error message that quotes the secret: a host name made of it cannot be found.
        secret_store.create_secret(owner, "HOST_PART", "tok9f8e7d6c5b4a")
        document = leaky(echo_server)
        document["nodes"][1]["params"] = {"url": "http://{{secrets.HOST_PART}}.invalid/"}
        flow = services.create_flow(owner, document, slug="unreachable")
        run = finished(services.start_run(owner, flow, {})[0].pk)
        assert run.status == "failed" and "[secret:HOST_PART]" in run.error["message"]
        for _ in range(100):  # the run span ends just after the run's row is written
            if any(span.name.startswith("run ") for span in exporter.get_finished_spans()):
                break
            threading.Event().wait(0.05)
    finally:
        executor.stop()
        setup.uninstall()
        provider.shutdown()
    spans = exporter.get_finished_spans()
    assert any(span.name == "node http" for span in spans)
    text = json.dumps([{"name": span.name, "attributes": dict(span.attributes or {}),
                        "status": span.status.description,
                        "events": [dict(event.attributes or {}) for event in span.events]}
                       for span in spans], default=str)
    assert "[secret:HOST_PART]" in text  # the node's error is there, cleaned
    assert "tok9f8e7d6c5b4a" not in text
