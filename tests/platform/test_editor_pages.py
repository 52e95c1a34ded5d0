"""The visual editor's pages (docs/editor.md): who may open them, what they hand the editor's
script, the links that lead to them, and a bundle that matches its sources. What the editor
does in a browser is tested in tests/browser/test_editor.py."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
from django.test import Client

from flows import services
from flows.services import secrets as secret_service

from . import factories

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]
BUNDLE = ROOT / "flows" / "static" / "flows" / "editor"


def boot_of(response) -> dict:
    """The JSON the page hands the editor (`<script id="editor-boot">`)."""
    found = re.search(r'<script id="editor-boot" type="application/json">(.*?)</script>',
                      response.content.decode(), re.S)
    assert found, "no editor-boot script"
    return json.loads(found.group(1))


@pytest.mark.parametrize("path", ["/flows/new/", "/flows/hello/edit/"])
def test_anonymous_visitors_are_sent_to_sign_in_first(owner, path):
    factories.flow(owner, slug="hello")
    response = Client().get(path)
    assert response.status_code == 302 and response["Location"] == f"/login/?next={path}"


def test_the_editor_gets_the_draft_the_secret_names_and_the_addresses(owner, browser):
    flow = factories.flow(owner, slug="hello")
    secret_service.create_secret(owner, "API_KEY", "s3cret-value-9")
    response = browser.get("/flows/hello/edit/")
    assert response.status_code == 200
    boot = boot_of(response)
    assert boot["dsl"] == flow.draft
    assert boot["flow"] == {"slug": "hello", "published_version": None}
    assert boot["secrets"] == ["API_KEY"]
    assert boot["urls"]["validate"] == "/api/flows/validate/"
    assert boot["urls"]["schema"] == "/api/dsl/schema/"
    assert "s3cret-value-9" not in response.content.decode()
    assert "script-src 'self'" in response["Content-Security-Policy"]
    assert "no-cache" in response["Cache-Control"]
    assert '<script type="module" src="/static/flows/editor/editor.js">' in response.content.decode()


def test_the_editor_is_offered_the_other_flows_and_the_servers_providers(
        owner, outsider, browser, settings, monkeypatch):
    from flows.execution.world import shared_world

    for slug in ("summarize", "hello", "gone"):
        factories.flow(owner, slug=slug)
    services.delete_flow(services.flow_of(owner, "gone"))
    factories.flow(outsider, slug="theirs")
    monkeypatch.setenv("LOCAL_MODEL_KEY", "sk-local-5e4d3c2b1a")
    settings.LLM_PROVIDERS = {"local": {"base_url": "http://127.0.0.1:9/v1",
                                        "api_key_env": "LOCAL_MODEL_KEY"}}
    shared_world.cache_clear()
    try:
        editing = browser.get("/flows/hello/edit/")
        creating = browser.get("/flows/new/")
    finally:
        shared_world.cache_clear()

    # Its own flows but the one edited: not deleted ones, not someone else's.
    assert boot_of(editing)["choices"] == {"flows": ["summarize"], "providers": ["echo", "local"]}
    assert boot_of(creating)["choices"]["flows"] == ["hello", "summarize"]
    assert "sk-local-5e4d3c2b1a" not in editing.content.decode()


def test_someone_elses_flow_is_not_found_in_the_editor(owner, outsider):
    factories.flow(outsider, slug="theirs")
    session = Client()
    session.force_login(owner)
    assert session.get("/flows/theirs/edit/").status_code == 404


def test_a_new_flow_starts_as_a_valid_start_and_end(browser, owner):
    boot = boot_of(browser.get("/flows/new/"))
    assert boot["flow"] is None
    assert services.problems_of(owner, boot["dsl"]) == []
    assert [node["type"] for node in boot["dsl"]["nodes"]] == ["start", "end"]


def test_the_flow_page_and_the_index_lead_to_the_editor(owner, browser):
    factories.flow(owner, slug="hello")
    assert 'href="/flows/hello/edit/"' in browser.get("/flows/hello/").content.decode()
    index = browser.get("/flows/").content.decode()
    assert 'href="/flows/new/"' in index and 'href="/flows/hello/edit/"' in index


def test_the_admin_offers_the_editor_on_its_own_flows_only(client, db):
    staff = factories.user("root", staff=True)
    staff.is_superuser = True
    staff.save()
    client.force_login(staff)
    own = factories.flow(staff, slug="mine")
    other = factories.flow(factories.user("bo"), slug="theirs")
    own_page = client.get(f"/admin/flows/flow/{own.pk}/change/").content.decode()
    assert 'href="/flows/mine/edit/"' in own_page and "Edit visually" in own_page
    other_page = client.get(f"/admin/flows/flow/{other.pk}/change/").content.decode()
    assert "Edit visually" not in other_page


def test_the_bundle_is_built_from_the_sources_as_they_are():
    """bin/build-editor writes the sources' fingerprint into build.json; a change to
    editor/src without a rebuild fails here."""
    editor = ROOT / "editor"
    sources = sorted((path for path in (editor / "src").rglob("*") if path.is_file()),
                     key=lambda path: path.relative_to(editor).parts)
    sources += [editor / "package-lock.json", editor / "build.mjs"]
    digest = hashlib.sha256()
    for path in sources:
        digest.update(str(path.relative_to(editor)).encode() + b"\0" + path.read_bytes() + b"\0")
    built = json.loads((BUNDLE / "build.json").read_text())
    assert built["sources"] == f"sha256:{digest.hexdigest()}", "run bin/build-editor"
    listed = (BUNDLE / "LICENSES.md").read_text()
    for name, version in built["packages"].items():
        assert f"| {name} | {version} |" in listed
    assert {"@xyflow/react", "@dagrejs/dagre", "react", "codemirror"} <= set(built["packages"])


@pytest.mark.parametrize("position, code", [
    ({"x": 1}, "missing_field"), ({"x": "1", "y": 2}, "wrong_type"),
    ({"x": 1, "y": 2, "zoom": 3}, "unknown_field"),
])
def test_a_bad_position_is_refused_at_its_pointer_and_nothing_is_written(owner, api, position,
                                                                         code):
    """What the editor saves goes through the API's validation like any document."""
    flow = factories.flow(owner, slug="hello")
    document = json.loads(json.dumps(flow.draft))
    document["nodes"][0]["ui"] = position
    with factories.no_rows_change():
        error = factories.assert_error(
            api.put("/api/flows/hello/", {"dsl": document}, format="json"), 400, "invalid_dsl")
    assert any(detail["code"] == code and detail["path"].startswith("/nodes/0/ui")
               for detail in error["details"]), error


def test_the_editor_pages_only_show(owner, browser):
    factories.flow(owner, slug="hello")
    for path in ("/flows/new/", "/flows/hello/edit/"):
        assert browser.post(path).status_code == 405
