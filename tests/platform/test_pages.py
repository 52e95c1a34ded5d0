"""The browser pages (flows/pages/): who sees them, the start-a-run form generated from the
start node's inputs, and what the run page hands its scripts. The live part (the scripts and
the websocket) is tested in a real browser: tests/browser/."""

from __future__ import annotations

import html
import json
import re
import uuid
from html.parser import HTMLParser
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.contrib.staticfiles import finders
from django.test import Client

from flows import services
from flows.admin.display import live_run_url
from flows.models import Run
from flows.services.history import store_events

from . import factories

pytestmark = pytest.mark.django_db

TYPED = {
    "dsl": "astron/v1", "name": "Typed inputs",
    "nodes": [
        {"id": "start", "type": "start", "params": {"inputs": {
            "title": {"type": "string", "required": True, "description": "What it is called"},
            "count": {"type": "integer", "default": 3},
            "ratio": {"type": "number"},
            "loud": {"type": "boolean", "default": True},
            "options": {"type": "object", "default": {"a": 1}},
            "tags": {"type": "array", "items": {"type": "string"}, "required": True},
            "extra": {"type": "any"},
        }}},
        {"id": "end", "type": "end", "inputs": {"title": "{{start.title}}"}},
    ],
    "edges": [{"from": "start", "to": "end"}],
}


class Tags(HTMLParser):
    """The start tags of a page, with their attributes, and the text inside some of them."""

    def __init__(self, html: str):
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: dict[str, str] = {}
        self._script: str | None = None
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        self.tags.append((tag, attributes))
        if tag == "script" and attributes.get("type") == "application/json":
            self._script = attributes.get("id")

    def handle_data(self, data):
        if self._script:
            self.scripts[self._script] = self.scripts.get(self._script, "") + data

    def handle_endtag(self, tag):
        if tag == "script":
            self._script = None

    def named(self, name: str) -> tuple[str, dict[str, str | None]]:
        found = [(tag, attrs) for tag, attrs in self.tags if attrs.get("name") == name]
        assert len(found) == 1, (name, found)
        return found[0]

    def fields(self, prefix: str = "input-") -> set[str]:
        return {attrs["name"] for _, attrs in self.tags
                if (attrs.get("name") or "").startswith(prefix)}

    def json(self, script_id: str):
        return json.loads(self.scripts[script_id])


def client_of(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def typed(owner):
    return services.create_flow(owner, TYPED, slug="typed")


def finished_run(owner, flow) -> Run:
    """A run whose events were stored as an executing worker stores them."""
    run = factories.run(owner, flow)
    ts = "2026-01-01T00:00:00.000Z"
    events = [
        ("run.started", None, {"inputs": {"name": "Ada"}, "flow": flow.slug, "version": "draft"}),
        ("node.started", None, {"node": "start", "type": "start", "attempt": 1, "inputs": {}}),
        ("node.finished", None, {"node": "start", "status": "succeeded", "outputs": {"name": "Ada"},
                                 "error": None, "elapsed_ms": 0.1, "attempts": 1}),
    ]
    store_events(run.pk, [{"seq": seq, "type": kind, "ts": ts, "run": str(run.pk), "scope": scope,
                           "item": None, "data": data}
                          for seq, (kind, scope, data) in enumerate(events, start=1)])
    run.refresh_from_db()
    return run


# --- Who sees what -------------------------------------------------------------------------------


def test_the_root_leads_to_the_flows(browser):
    response = browser.get("/")
    assert response.status_code == 302 and response["Location"] == "/flows/"


@pytest.mark.parametrize("path", ["/flows/", "/flows/hello/", "/flows/hello/run/", "RUN"])
def test_anonymous_visitors_are_sent_to_the_login_page(owner, path):
    flow = factories.flow(owner, slug="hello")
    if path == "RUN":
        path = f"/runs/{factories.run(owner, flow).pk}/"
    response = Client().get(path)
    assert response.status_code == 302
    assert response["Location"] == f"/login/?next={path}"


def test_anyone_with_an_account_signs_in_and_comes_back_where_they_were_going(db):
    User.objects.create_user("bo", password="correct horse")  # not staff
    client = Client()

    page = client.get("/login/?next=/flows/")
    assert page.status_code == 200 and 'id="login-form"' in page.content.decode()
    response = client.post("/login/", {"username": "bo", "password": "correct horse",
                                       "next": "/flows/"})

    assert response.status_code == 302 and response["Location"] == "/flows/"
    assert client.get("/flows/").status_code == 200


def test_a_wrong_password_is_told_and_signs_nobody_in(db):
    User.objects.create_user("bo", password="correct horse")
    client = Client()

    response = client.post("/login/", {"username": "bo", "password": "wrong",
                                       "next": "/flows/"})

    assert response.status_code == 200
    assert "enter a correct username and password" in response.content.decode()
    assert client.get("/flows/").status_code == 302


def test_signing_in_never_sends_anyone_to_another_site(db):
    User.objects.create_user("bo", password="correct horse")

    response = Client().post("/login/", {"username": "bo", "password": "correct horse",
                                         "next": "https://evil.example/"})

    assert response.status_code == 302 and response["Location"] == "/flows/"


def test_signing_out_ends_the_session(owner, browser):
    response = browser.post("/logout/")

    assert response.status_code == 302 and response["Location"] == "/login/"
    assert browser.get("/flows/").status_code == 302


def test_the_owner_sees_every_page(owner, browser):
    flow = factories.flow(owner, slug="hello", publish=True)
    run = factories.run(owner, flow)
    for path in ("/flows/", "/flows/hello/", "/flows/hello/run/", f"/runs/{run.pk}/"):
        response = browser.get(path)
        assert response.status_code == 200, path
        assert response["Content-Type"].startswith("text/html")
        assert "Hello" in response.content.decode()


def test_someone_elses_flows_and_runs_are_not_found(owner, outsider):
    flow = factories.flow(owner, slug="hello")
    run = factories.run(owner, flow)
    intruder = client_of(outsider)
    for path in ("/flows/hello/", "/flows/hello/run/", f"/runs/{run.pk}/"):
        assert intruder.get(path).status_code == 404, path
    assert intruder.post("/flows/hello/run/", {"input-name": "Eve"}).status_code == 404
    assert Run.objects.count() == 1
    index = intruder.get("/flows/").content.decode()
    assert "/flows/hello/" not in index and str(run.pk) not in index


def test_unknown_and_deleted_things_are_not_found(owner, browser):
    flow = factories.flow(owner, slug="hello")
    assert browser.get(f"/runs/{uuid.uuid4()}/").status_code == 404
    assert browser.get("/runs/not-a-uuid/").status_code == 404
    assert browser.get("/flows/nothing/").status_code == 404
    assert browser.get("/flows/hello/?version=7").status_code == 404
    services.delete_flow(flow)
    assert browser.get("/flows/hello/").status_code == 404
    assert browser.get("/flows/hello/run/").status_code == 404


def test_the_admin_links_the_run_page(owner):
    run = factories.run(owner, factories.flow(owner))
    assert live_run_url(run.pk) == f"/runs/{run.pk}/"


# --- The start-a-run form ------------------------------------------------------------------------


def test_the_start_form_has_one_field_per_input_with_its_type(typed, browser):
    page = browser.get("/flows/typed/run/").content.decode()
    tags = Tags(page)
    assert tags.fields() == {f"input-{name}" for name in TYPED["nodes"][0]["params"]["inputs"]}
    tag, title = tags.named("input-title")
    assert (tag, title["type"]) == ("input", "text") and "required" in title
    tag, count = tags.named("input-count")
    assert (tag, count["type"], count["step"], count["value"]) == ("input", "number", "1", "3")
    assert "required" not in count
    tag, ratio = tags.named("input-ratio")
    assert (tag, ratio["type"], ratio["step"]) == ("input", "number", "any")
    tag, loud = tags.named("input-loud")
    assert (tag, loud["type"]) == ("input", "checkbox") and "checked" in loud
    for name in ("options", "tags", "extra"):
        assert tags.named(f"input-{name}")[0] == "textarea"
    assert "required" in tags.named("input-tags")[1]
    assert '{\n  &quot;a&quot;: 1\n}' in page  # an object's default, as JSON
    assert "What it is called" in page  # descriptions
    assert page.count('class="required"') >= 2  # required markers
    assert "array of string" in page
    assert tags.named("version")[0] == "select"
    options = [attrs for tag, attrs in tags.tags if tag == "option"]
    assert options == [{"value": "draft", "selected": None}]  # nothing published yet


@pytest.mark.parametrize("typed_json", ['"a\\u0000b"', '"\\ud800"', "NaN", "[" * 100_000])
def test_json_inputs_the_api_would_refuse_are_refused_by_the_form_too(typed, browser,
                                                                     typed_json):
    response = browser.post("/flows/typed/run/", {
        "version": "draft", "input-title": "t", "input-options": typed_json})

    assert response.status_code == 200
    page = html.unescape(response.content.decode())
    assert 'data-problem="options"' in page and "JSON" in page
    assert Run.objects.count() == 0


def test_invalid_inputs_show_each_problem_next_to_its_field_and_start_nothing(typed, browser):
    response = browser.post("/flows/typed/run/", {
        "version": "draft", "input-title": "", "input-count": "2.5", "input-ratio": "x",
        "input-options": "{not json", "input-tags": '{"a": 1}', "input-extra": ""})
    assert response.status_code == 200
    page = response.content.decode()
    for name in ("title", "count", "ratio", "options"):
        assert f'data-problem="{name}"' in page, name
    assert 'the input "title" is required' in html.unescape(page)
    assert "must be a whole number" in page and "must be a number" in page
    assert "not valid JSON" in page
    assert Run.objects.count() == 0
    # What was typed stays in the form.
    assert 'value="2.5"' in page and "{not json" in page

    # Once the form converts, the engine's own checks (types) are shown by field too.
    response = browser.post("/flows/typed/run/", {
        "version": "draft", "input-title": "T", "input-tags": '{"a": 1}'})
    assert response.status_code == 200
    page = response.content.decode()
    assert 'data-problem="tags"' in page
    assert 'the input "tags" must be an array, not object' in html.unescape(page)
    assert Run.objects.count() == 0


def test_a_valid_form_starts_a_run_and_opens_its_page(owner, typed, browser):
    response = browser.post("/flows/typed/run/", {
        "version": "draft", "input-title": "  spaced ", "input-count": "7", "input-ratio": "2.0",
        "input-options": "", "input-tags": '["x", "y"]', "input-extra": "null"})
    run = Run.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/runs/{run.pk}/"
    assert run.owner == owner and run.flow == typed and run.version_number is None
    # Strings are kept as typed, numbers keep their kind, empty fields take their default,
    # an unchecked box is false.
    assert run.inputs == {"title": "  spaced ", "count": 7, "ratio": 2.0, "loud": False,
                          "options": {"a": 1}, "tags": ["x", "y"], "extra": None}
    assert isinstance(run.inputs["ratio"], float)


def test_the_form_follows_the_chosen_version(owner, browser):
    flow = factories.flow(owner, slug="hello", publish=True)
    draft = factories.sample("hello")
    draft["nodes"][0]["params"]["inputs"] = {"who": {"type": "string", "required": True}}
    draft["nodes"][1]["params"]["template"] = "Hi {{start.who}}"
    services.update_flow(flow, draft)

    assert Tags(browser.get("/flows/hello/run/").content.decode()).fields() == {"input-name"}
    assert Tags(browser.get("/flows/hello/run/?version=draft").content.decode()).fields() == {
        "input-who"}
    response = browser.post("/flows/hello/run/", {"version": "published", "input-name": "Ada"})
    assert response.status_code == 302
    response = browser.post("/flows/hello/run/", {"version": "draft", "input-who": "Lin"})
    assert response.status_code == 302
    published, drafted = Run.objects.order_by("created_at")
    assert (published.version_number, published.inputs) == (1, {"name": "Ada"})
    assert (drafted.version_number, drafted.inputs) == (None, {"who": "Lin"})
    # A version that does not exist is refused beside the selector; nothing starts.
    response = browser.post("/flows/hello/run/", {"version": "7", "input-name": "Ada"})
    assert response.status_code == 200 and Run.objects.count() == 2


# --- The flow page and the index -----------------------------------------------------------------


def test_the_flow_page_shows_its_graph_versions_and_recent_runs(owner, browser):
    flow = factories.flow(owner, "router", slug="router", publish=True)
    run = factories.run(owner, flow, {"text": "hi"})
    Run.objects.filter(pk=run.pk).update(status="failed")
    page = browser.get("/flows/router/").content.decode()
    tags = Tags(page)
    assert tags.json("flow-document") == flow.draft
    assert 'data-version="1"' in page
    assert f'href="/runs/{run.pk}/"' in page
    assert '<span class="badge status-failed">failed</span>' in page
    assert 'href="/flows/router/run/"' in page
    version = Tags(browser.get("/flows/router/?version=1").content.decode())
    assert version.json("flow-document") == flow.versions.get().document.dsl


def test_the_flow_page_lists_at_most_twenty_recent_runs(owner, browser):
    flow = factories.flow(owner, slug="hello")
    runs = [factories.run(owner, flow) for _ in range(22)]
    page = browser.get("/flows/hello/").content.decode()
    assert page.count('<tr data-run="') == 20
    assert str(runs[-1].pk) in page and str(runs[0].pk) not in page


def test_the_index_lists_own_flows_with_links(owner, outsider, browser):
    factories.flow(owner, slug="hello")
    factories.flow(outsider, "router", slug="router")
    page = browser.get("/flows/").content.decode()
    assert 'href="/flows/hello/"' in page and 'href="/flows/hello/run/"' in page
    assert "/flows/router/" not in page


# --- The run page ----------------------------------------------------------------------------


def test_the_run_page_embeds_its_document_and_state(owner, browser):
    flow = factories.flow(owner, slug="hello")
    run = finished_run(owner, flow)
    services.update_flow(flow, factories.sample("router"))  # the run keeps its own snapshot
    response = browser.get(f"/runs/{run.pk}/")
    page = response.content.decode()
    tags = Tags(page)
    assert tags.json("run-document") == run.document.dsl == factories.sample("hello")
    state = tags.json("run-state")
    assert state["id"] == str(run.pk) and state["status"] == "running"
    assert state["last_seq"] == 3 and state["inputs"] == {"name": "Ada"}
    assert [(n["node"], n["status"], n["attempts"]) for n in state["nodes"]] == [
        ("start", "succeeded", 1)]
    assert state["waiting"] == [] and state["cancel_requested"] is False
    root = next(attrs for tag, attrs in tags.tags if attrs.get("id") == "run-page")
    assert root["data-socket"] == f"/ws/runs/{run.pk}/"
    assert root["data-answer-url"] == f"/api/runs/{run.pk}/answer/"
    assert root["data-cancel-url"] == f"/api/runs/{run.pk}/cancel/"
    for state_name in ("pending", "running", "waiting", "succeeded", "recovered", "failed",
                       "skipped", "cancelled"):
        assert f"swatch state-{state_name}" in page  # the legend


def test_the_run_page_shows_open_questions_in_its_state(owner, browser):
    flow = factories.flow(owner, "approval", slug="approval")
    run = factories.run(owner, flow, {"request": "refund"})
    question = {"node": "ask", "question": "Send this reply?", "timeout_at": None,
                "options": [{"id": "yes", "label": "Send"}, {"id": "no", "label": "Discard"}]}
    Run.objects.filter(pk=run.pk).update(status="waiting", waiting=[question])
    state = Tags(browser.get(f"/runs/{run.pk}/").content.decode()).json("run-state")
    assert state["status"] == "waiting" and state["waiting"] == [question]


def test_pages_use_only_local_assets_that_exist(owner, browser):
    flow = factories.flow(owner, slug="hello")
    run = factories.run(owner, flow)
    for path in ("/flows/", "/flows/hello/", "/flows/hello/run/", f"/runs/{run.pk}/"):
        tags = Tags(browser.get(path).content.decode())
        assets = [attrs.get("src") or attrs.get("href") for tag, attrs in tags.tags
                  if (tag == "script" and attrs.get("src"))
                  or (tag == "link" and attrs.get("rel") in ("stylesheet", "icon"))]
        assert assets, path
        for asset in assets:
            assert asset.startswith("/static/flows/"), asset
            assert finders.find(asset.removeprefix("/static/")), asset
    for module in ("state", "graph", "render", "socket", "run-page", "flow-page", "start-form"):
        source = Path(finders.find(f"flows/js/{module}.js")).read_text()
        for imported in re.findall(r'^import .* from "([^"]+)";$', source, re.MULTILINE):
            assert imported.startswith("./") and finders.find(f"flows/js/{imported[2:]}")


def test_static_files_are_served_without_collectstatic(tmp_path, settings):
    """One daphne process is a complete server (docs/configuration.md), collectstatic run or not."""
    settings.STATIC_ROOT = tmp_path / "static"  # empty: nothing collected
    settings.DEBUG = False
    client = Client()  # its handler, and WhiteNoise, are made with these settings

    for path in ("/static/flows/favicon.svg", "/static/flows/css/astron.css",
                 "/static/admin/css/base.css"):
        response = client.get(path)
        assert response.status_code == 200, path
        response.close()  # WhiteNoise streams the file: let it go


def test_collected_static_files_are_sent_compressed(tmp_path, settings):
    """After collectstatic, a file comes from STATIC_ROOT with its gzip copy, not from its
    app's folder (which has none); what was not collected still comes from the app."""
    import gzip

    root = tmp_path / "static"
    (root / "flows" / "css").mkdir(parents=True)
    (root / "flows" / "css" / "astron.css").write_text("body { color: red; }\n" * 100)
    (root / "flows" / "css" / "astron.css.gz").write_bytes(
        gzip.compress(b"body { color: red; }\n" * 100))
    settings.STATIC_ROOT = root
    settings.DEBUG = False
    client = Client()

    response = client.get("/static/flows/css/astron.css", HTTP_ACCEPT_ENCODING="gzip")
    assert response.status_code == 200 and response["Content-Encoding"] == "gzip"
    assert gzip.decompress(b"".join(response.streaming_content)) == b"body { color: red; }\n" * 100
    response.close()
    plain = client.get("/static/flows/favicon.svg", HTTP_ACCEPT_ENCODING="gzip")
    assert plain.status_code == 200 and "Content-Encoding" not in plain
    plain.close()


def test_the_pages_send_a_content_security_policy(client, owner):
    client.force_login(owner)
    for path in ("/flows/", "/login/"):
        policy = client.get(path, follow=True)["Content-Security-Policy"]
        assert "script-src 'self'" in policy and "object-src 'none'" in policy
    assert "Content-Security-Policy" not in client.get("/api/flows/")
