"""Webhooks (docs/api.md, Webhooks): signed deliveries start runs; anything else starts
nothing and writes nothing."""

from __future__ import annotations

import json
import time

import pytest
from django.test import Client

from flows.models import Run, Webhook
from flows.services import webhooks as hooks

from .factories import api_client, assert_error, flow, no_rows_change, user

pytestmark = pytest.mark.django_db


@pytest.fixture
def hello(owner):
    return flow(owner, "hello", slug="hello", publish=True)


@pytest.fixture
def hook(api, hello):
    created = api.post("/api/flows/hello/webhooks/", {}, format="json")
    assert created.status_code == 201, created.content
    return created.json()


def signed(secret: str, body: bytes, at: float | None = None) -> str:
    at = int(time.time() if at is None else at)
    return f"t={at},v1={hooks.signature(secret, at, body)}"


def deliver(hook: dict, body: bytes, signature: str | None = "sign",
            delivery: str | None = None, secret: str | None = None):
    headers = {}
    if signature == "sign":
        signature = signed(secret or hook["signing_secret"], body)
    if signature is not None:
        headers["HTTP_ASTRON_SIGNATURE"] = signature
    if delivery is not None:
        headers["HTTP_ASTRON_DELIVERY"] = delivery
    path = hook["url"].split("testserver", 1)[-1]
    return Client().post(path, body, content_type="application/json", **headers)


def test_creating_a_webhook_shows_its_secret_once(api, hook):
    assert hook["url"] == f"http://testserver/hooks/{hook['id']}/"
    assert hook["signing_secret"].startswith("whsec_")
    assert hook["version"] == "published"
    listed = api.get("/api/flows/hello/webhooks/").json()["results"]
    assert [row["id"] for row in listed] == [hook["id"]]
    assert "signing_secret" not in listed[0] and listed[0]["last_delivery_at"] is None
    stored = Webhook.objects.get()
    assert hook["signing_secret"] not in stored.signing_ciphertext


def test_a_signed_delivery_starts_a_run_with_the_body_as_inputs(api, hook, hello):
    body = json.dumps({"name": "Ada"}).encode()
    answer = deliver(hook, body, delivery="evt_1")
    assert answer.status_code == 202, answer.content
    run = Run.objects.get(pk=answer.json()["run"])
    assert answer.json()["status"] == run.status
    assert run.inputs == {"name": "Ada"} and run.flow == hello and run.owner == hello.owner
    assert run.trigger == {"type": "webhook", "webhook": hook["id"], "delivery": "evt_1"}
    assert api.get("/api/flows/hello/webhooks/").json()["results"][0]["last_delivery_at"]
    shown = api.get(f"/api/runs/{run.pk}/").json()["trigger"]
    assert shown == {"type": "webhook", "webhook": hook["id"], "delivery": "evt_1"}


def test_a_repeated_delivery_starts_nothing_new(hook):
    body = b'{"name": "Ada"}'
    first = deliver(hook, body, delivery="evt_1")
    again = deliver(hook, body, delivery="evt_1")
    assert first.json()["run"] == again.json()["run"]
    assert Run.objects.count() == 1
    assert_error(deliver(hook, b'{"name": "Bob"}', delivery="evt_1"), 409,
                 "idempotency_conflict")
    deliver(hook, body)  # no delivery id: each delivery is a run
    assert Run.objects.count() == 2


@pytest.mark.parametrize("tamper", [
    "missing", "garbage", "wrong secret", "body changed", "too old", "too new", "no v1",
    "timestamp not a number"])
def test_a_bad_signature_is_401_and_writes_nothing(hook, tamper):
    body = b'{"name": "Ada"}'
    signature = {
        "missing": None,
        "garbage": "nonsense",
        "wrong secret": signed("whsec_not-the-secret", body),
        "body changed": signed(hook["signing_secret"], b'{"name": "Eve"}'),
        "too old": signed(hook["signing_secret"], body, time.time() - 310),
        "too new": signed(hook["signing_secret"], body, time.time() + 310),
        "no v1": f"t={int(time.time())}",
        "timestamp not a number": f"t=soon,v1={hooks.signature(hook['signing_secret'], 'soon', body)}",
    }[tamper]
    with no_rows_change():
        assert_error(deliver(hook, body, signature=signature), 401, "bad_signature")
    assert Webhook.objects.get().last_delivery_at is None


def test_a_captured_request_cannot_be_replayed_after_the_tolerance(hook):
    body = b'{"name": "Ada"}'
    at = time.time() - 200
    signature = signed(hook["signing_secret"], body, at)
    assert deliver(hook, body, signature=signature).status_code == 202
    # The same bytes five minutes later: the timestamp is then outside the window.
    with pytest.raises(Exception) as refused:
        hooks.deliver(hook["id"], body, signature, None, now=at + 301)
    assert refused.value.status == 401


def test_a_second_signature_is_accepted_while_senders_rotate(hook):
    body = b'{"name": "Ada"}'
    at = int(time.time())
    both = f"t={at},v1={'0' * 64},v1={hooks.signature(hook['signing_secret'], at, body)}"
    assert deliver(hook, body, signature=both).status_code == 202


@pytest.mark.parametrize("body, code", [
    (b"not json", "invalid_json"),
    (b"[1, 2]", "invalid_inputs"),
    (b'"text"', "invalid_inputs"),
    (b'{"name": 3}', "invalid_inputs"),
    (b'{"name": "Ada", "extra": 1}', "invalid_inputs"),
    (b"\xff\xfe", "invalid_json"),
])
def test_a_signed_body_that_is_not_good_inputs_is_400_and_starts_nothing(hook, body, code):
    with no_rows_change():
        assert_error(deliver(hook, body), 400, code)


def test_unknown_and_deleted_hooks_are_404(api, hook):
    body = b'{"name": "Ada"}'
    for path in ("/hooks/00000000-0000-0000-0000-000000000000/", "/hooks/not-a-uuid/"):
        assert_error(Client().post(path, body, content_type="application/json",
                                   HTTP_ASTRON_SIGNATURE=signed("x", body)), 404, "not_found")
    assert api.delete(f"/api/flows/hello/webhooks/{hook['id']}/").status_code == 204
    with no_rows_change():
        assert_error(deliver(hook, body), 404, "not_found")
    assert_error(api.delete(f"/api/flows/hello/webhooks/{hook['id']}/"), 404, "not_found")


def test_a_hook_of_a_deleted_flow_is_404(api, hook):
    api.delete("/api/flows/hello/")
    assert_error(deliver(hook, b'{"name": "Ada"}'), 404, "not_found")


def test_a_draft_hook_runs_the_draft(api, hello):
    created = api.post("/api/flows/hello/webhooks/", {"version": "draft"}, format="json").json()
    assert created["version"] == "draft"
    answer = deliver(created, b'{"name": "Ada"}')
    assert Run.objects.get(pk=answer.json()["run"]).version_number is None


@pytest.mark.parametrize("body", [{"version": 0}, {"version": "latest"}, {"version": True},
                                  {"colour": "red"}, []])
def test_bad_webhook_bodies_are_400_and_nothing_is_created(api, hello, body):
    answer = api.post("/api/flows/hello/webhooks/", body, format="json")
    assert answer.status_code == 400, answer.content
    assert not Webhook.objects.exists()


def test_someone_elses_flow_has_no_webhooks_for_you(hook):
    stranger = api_client(user("eve"))
    assert_error(stranger.get("/api/flows/hello/webhooks/"), 404, "not_found")
    assert_error(stranger.post("/api/flows/hello/webhooks/", {}, format="json"), 404,
                 "not_found")
    assert_error(stranger.delete(f"/api/flows/hello/webhooks/{hook['id']}/"), 404, "not_found")
    assert Webhook.objects.count() == 1


def test_deliveries_are_rate_limited_per_hook(hook, settings):
    settings.WEBHOOK_RATE = "2/minute"
    body = b'{"name": "Ada"}'
    assert [deliver(hook, body).status_code for _ in range(2)] == [202, 202]
    refused = deliver(hook, body)
    assert refused.status_code == 429 and int(refused["Retry-After"]) >= 1
    assert Run.objects.count() == 2


def test_a_webhook_of_an_unpublished_flow_refuses_with_not_published(api, owner):
    flow(owner, "hello", slug="draft-only")
    created = api.post("/api/flows/draft-only/webhooks/", {}, format="json").json()
    with no_rows_change():
        assert_error(deliver(created, b'{"name": "Ada"}'), 409, "not_published")


# --- the flow page ------------------------------------------------------------------------




def test_the_page_creates_a_hook_shows_its_secret_once_and_deletes_it(browser, hello):
    created = browser.post("/flows/hello/webhooks/", {"version": "draft"})
    assert created.status_code == 200
    hook = Webhook.objects.get()
    page = created.content.decode()
    secret = hooks.encryption.decrypt(hook.signing_ciphertext)
    assert secret in page and f"/hooks/{hook.pk}/" in page
    assert "no-store" in created["Cache-Control"] or "no-cache" in created["Cache-Control"]

    flow_page = browser.get("/flows/hello/").content.decode()
    assert f"http://testserver/hooks/{hook.pk}/" in flow_page
    assert secret not in flow_page
    assert "ASTRON_WEBHOOK_SECRET" in flow_page  # the copyable example

    gone = browser.post(f"/flows/hello/webhooks/{hook.pk}/delete/")
    assert gone.status_code == 302 and not Webhook.objects.exists()


def test_the_page_refuses_a_bad_version_and_someone_elses_flow(browser, hello):
    assert browser.post("/flows/hello/webhooks/", {"version": "latest"}).status_code == 400
    stranger = Client()
    stranger.force_login(user("eve"))
    assert stranger.post("/flows/hello/webhooks/", {"version": "draft"}).status_code == 404
    assert not Webhook.objects.exists()


def test_the_curl_example_signs_as_the_server_checks(hello):
    import shutil
    import subprocess

    from flows.pages.examples import curl_example

    if not shutil.which("openssl"):
        pytest.skip("openssl is not installed")
    example = curl_example("http://127.0.0.1:9/hooks/x/", hello.draft, "whsec_abc")
    # Run everything but the curl itself, then print what it would send.
    script = example.split("\ncurl", 1)[0] + '\nprintf "%s\\n%s\\n%s" "$T" "$SIG" "$BODY"'
    at, sig, body = subprocess.run(["bash", "-c", script], capture_output=True, text=True,
                                   check=True).stdout.split("\n", 2)
    assert json.loads(body) == {"name": "text"}  # a value of each input's type
    assert sig == hooks.signature("whsec_abc", at, body.encode())


# --- the admin ----------------------------------------------------------------------------




def test_the_admin_creates_lists_and_deletes_hooks_showing_the_secret_once(staff_client,
                                                                          hello):
    created = staff_client.post("/admin/flows/webhook/add/", {"flow": hello.pk,
                                                              "version": "published"})
    assert created.status_code == 200
    hook = Webhook.objects.get()
    secret = hooks.encryption.decrypt(hook.signing_ciphertext)
    assert secret in created.content.decode()

    listing = staff_client.get("/admin/flows/webhook/").content.decode()
    page = staff_client.get(f"/admin/flows/webhook/{hook.pk}/change/").content.decode()
    assert f"http://testserver/hooks/{hook.pk}/" in listing
    assert "ASTRON_WEBHOOK_SECRET" in page
    assert secret not in listing and secret not in page

    deleted = staff_client.post(f"/admin/flows/webhook/{hook.pk}/delete/", {"post": "yes"})
    assert deleted.status_code == 302 and not Webhook.objects.exists()


def test_the_admin_refuses_a_bad_version(staff_client, hello):
    answer = staff_client.post("/admin/flows/webhook/add/", {"flow": hello.pk,
                                                             "version": "latest"})
    assert answer.status_code == 200 and not Webhook.objects.exists()
