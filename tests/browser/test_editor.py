"""The visual editor (docs/editor.md) in a real browser against a real server: a flow built
from nothing through the UI alone and run; a broken reference pinned on its node and field;
undo and redo; the JSON view round-tripping every sample without changing its hash; moving a
node changing only its `ui`.

Screenshots go to test-artifacts/; with ASTRON_DOCS_IMAGES=1 the README's images of the
editor in docs/images/ are taken again too.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from django.contrib.auth.models import User

from engine.compile import document_digest
from flows import services
from flows.models import Flow

from .browsing import PASSWORD, chromium_page, log_in, screenshot, skip_unless_ready

skip_unless_ready()

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
SAMPLE_NAMES = sorted(path.stem for path in SAMPLES.glob("*.json"))


def sample(name: str) -> dict:
    return json.loads((SAMPLES / f"{name}.json").read_text())


@pytest.fixture
def ada():
    return User.objects.create_user("ada", password=PASSWORD)


def draft_of(slug: str) -> dict:
    """The stored draft. Read from another thread: Playwright's loop runs in this one, and
    Django refuses the ORM where a loop runs."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: Flow.objects.get(slug=slug).draft).result()


def open_editor(page, base: str, path: str) -> None:
    log_in(page, base, path, "ada")
    page.wait_for_selector(".react-flow__node")
    wait_checked(page)
    settle(page)


def wait_checked(page) -> None:
    """Until the live validation has answered for the document on screen."""
    page.wait_for_selector(".editor[data-checking=false]")


def test_editor_shows_a_sample_and_its_problems(server, ada):
    services.create_flow(ada, sample("router"), slug="router")
    with chromium_page() as page:
        open_editor(page, server, "/flows/router/edit/")
        assert page.locator(".react-flow__node").count() == 7
        assert page.locator(".problems h2").text_content().startswith("No problems")
        screenshot(page, "editor-router.png")
        assert page.problems == []


# --- driving the editor ----------------------------------------------------------------------


def expect(locator):
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


def field(page, pointer: str):
    """The side panel's field for the JSON Pointer `pointer`."""
    return page.locator(f'.side [data-pointer="{pointer}"]').first


def node_box(page, node_id: str):
    return page.locator(f'.react-flow__node[data-id="{node_id}"]')


def select_node(page, node_id: str) -> None:
    node_box(page, node_id).click()
    page.wait_for_selector(f'.side section[aria-label="Node {node_id}"]')


def add_node(page, node_type: str, node_id: str) -> None:
    """From the palette; the new node is selected, and is renamed `node_id`."""
    page.click(f'.palette-item[data-type="{node_type}"]')
    page.fill("#node-id", node_id)
    page.press("#node-id", "Enter")
    page.wait_for_selector(f'.side section[aria-label="Node {node_id}"]')
    expect(page.locator("#node-id")).to_be_focused()  # renamed, the field keeps the focus


def drag_connect(page, source: str, handle: str, target: str) -> None:
    """Drag from `source`'s output `handle` and drop on the node `target`."""
    start = node_box(page, source).locator(f'.react-flow__handle[data-handleid="{handle}"]')
    start_box = start.bounding_box()
    end_box = node_box(page, target).bounding_box()
    page.mouse.move(start_box["x"] + start_box["width"] / 2, start_box["y"] + start_box["height"] / 2)
    page.mouse.down()
    page.mouse.move(end_box["x"] + end_box["width"] / 2, end_box["y"] + end_box["height"] / 2,
                    steps=12)
    page.mouse.up()
    label = f"Edge from {source}{'' if handle == 'out' else f' ({handle})'} to {target}"
    expect(page.locator(f'.react-flow__edge[aria-label="{label}"]')).to_have_count(1)


def settle(page) -> None:
    """Until the canvas stops moving (a fit to screen is applied on the next tick)."""
    viewport = page.locator(".react-flow__viewport")
    before = None
    while (now := viewport.get_attribute("style")) != before:
        before = now
        page.wait_for_timeout(150)


def pick(page, pointer: str, reference: str) -> None:
    field(page, pointer).locator("select.reference-picker").first.select_option(reference)


def add_entry(page, pointer: str, label: str, name: str) -> None:
    """A new row of a name → value field (inputs, outputs), named `name`."""
    group = field(page, pointer)
    group.get_by_role("button", name=f"Add to {label}").click()
    key = group.locator("input.key").last
    key.fill(name)
    key.press("Enter")
    page.wait_for_selector(f'.side [data-pointer="{pointer}/{name}"]')


def action(page, name: str) -> None:
    """A button of the editor's toolbar."""
    page.locator(".editor-actions").get_by_role("button", name=name, exact=True).click()


def saved(page) -> None:
    action(page, "Save")
    expect(page.locator(".editor-message")).to_contain_text("Saved the draft")
    page.wait_for_selector(".editor[data-dirty=false]")


def without_ui(document: dict) -> dict:
    """The document with the editor's positions taken out, nodes by id, edges as a set."""
    nodes = {node["id"]: {key: value for key, value in node.items() if key != "ui"}
             for node in document["nodes"]}
    edges = {json.dumps(edge, sort_keys=True) for edge in document["edges"]}
    rest = {key: value for key, value in document.items() if key not in ("nodes", "edges")}
    return {"rest": rest, "nodes": nodes, "edges": edges}


# --- the tests -------------------------------------------------------------------------------


def test_router_built_from_a_new_flow_through_the_ui_alone_saves_publishes_and_runs(server, ada):
    with chromium_page({"width": 1800, "height": 1000}) as page:
        open_editor(page, server, "/flows/new/")
        page.fill("#flow-slug", "my-router")
        page.locator('[data-pointer="/name"] input').fill("Length router")
        page.locator('[data-pointer="/description"] textarea').fill(
            "Long texts are summarised by the LLM, short ones echoed; the branches merge.")

        # The nodes, from the palette (start and end come with a new flow).
        for node_type, node_id in [("code", "measure"), ("if_else", "route"), ("llm", "summarize"),
                                   ("template", "echo"), ("aggregate", "merge")]:
            add_node(page, node_type, node_id)
        action(page, "Tidy up")
        settle(page)

        # The edges: the new flow's start → end goes (selected, then the Delete key), the
        # others are drawn by dragging from a handle onto a node.
        page.locator(".react-flow__edge").first.click(force=True)
        page.keyboard.press("Delete")
        expect(page.locator(".react-flow__edge")).to_have_count(0)
        for source, handle, target in [("start", "out", "measure"), ("measure", "out", "route"),
                                       ("route", "case_1", "summarize"), ("route", "else", "echo"),
                                       ("summarize", "out", "merge"), ("echo", "out", "merge"),
                                       ("merge", "out", "end")]:
            drag_connect(page, source, handle, target)
        expect(page.locator(".react-flow__edge")).to_have_count(7)

        # The forms.
        select_node(page, "start")
        add_entry(page, "/nodes/0/params/inputs", "inputs", "text")
        field(page, "/nodes/0/params/inputs/text/required").locator("select").select_option("true")
        add_entry(page, "/nodes/0/params/inputs", "inputs", "limit")
        field(page, "/nodes/0/params/inputs/limit/type").locator("select").select_option('"integer"')
        field(page, "/nodes/0/params/inputs/limit/default").locator("textarea").fill("40")

        select_node(page, "measure")
        add_entry(page, "/nodes/2/inputs", "inputs", "text")
        pick(page, "/nodes/2/inputs/text", "start.text")
        code = field(page, "/nodes/2/params/code").locator(".cm-content")
        code.click()
        page.keyboard.press("Control+A")
        page.keyboard.insert_text("def main(text):\n    return {'length': len(text)}")
        add_entry(page, "/nodes/2/outputs", "outputs", "length")
        field(page, "/nodes/2/outputs/length/type").locator("select").select_option('"integer"')

        select_node(page, "route")
        case_id = field(page, "/nodes/3/params/cases/0/id").locator("input")
        case_id.fill("long")
        field(page, "/nodes/3/params/cases/0/conditions").get_by_role(
            "button", name="Add a condition").click()
        pick(page, "/nodes/3/params/cases/0/conditions/0/left", "measure.length")
        field(page, "/nodes/3/params/cases/0/conditions/0/op").locator("select").select_option('"gt"')
        pick(page, "/nodes/3/params/cases/0/conditions/0/right", "start.limit")
        # Its edge follows the case's new id.
        expect(page.locator('.react-flow__edge[aria-label="Edge from route (long) to summarize"]')
               ).to_have_count(1)

        select_node(page, "summarize")
        field(page, "/nodes/4/params/system").locator("textarea").fill("Be brief.")
        field(page, "/nodes/4/params/prompt").locator("textarea").fill("Summary: ")
        pick(page, "/nodes/4/params/prompt", "start.text")

        select_node(page, "echo")
        field(page, "/nodes/5/params/template").locator("textarea").fill("Short: ")
        pick(page, "/nodes/5/params/template", "start.text")

        select_node(page, "merge")
        sources = field(page, "/nodes/6/params/sources")
        sources.get_by_role("button", name="Add a source").click()
        sources.get_by_role("button", name="Add a source").click()
        pick(page, "/nodes/6/params/sources/0", "summarize.text")
        pick(page, "/nodes/6/params/sources/1", "echo.text")

        select_node(page, "end")
        add_entry(page, "/nodes/1/inputs", "inputs", "answer")
        pick(page, "/nodes/1/inputs/answer", "merge.value")
        add_entry(page, "/nodes/1/inputs", "inputs", "length")
        pick(page, "/nodes/1/inputs/length", "measure.length")

        wait_checked(page)
        assert page.locator(".problems h2").text_content().startswith("No problems"), \
            page.locator(".problems").inner_text()
        action(page, "Tidy up")
        settle(page)
        select_node(page, "route")
        screenshot(page, "editor-built-router.png", "editor.png")

        saved(page)
        assert page.url == f"{server}/flows/my-router/edit/"
        assert without_ui(draft_of("my-router")) == without_ui(sample("router"))

        action(page, "Publish")
        page.wait_for_selector(".editor-message >> text=Published version 1")
        action(page, "Run")
        page.fill("#run-input-text", "a text long enough to be summarised by the model, surely")
        page.click("text=Start the run")
        page.wait_for_url("**/runs/*/")
        page.wait_for_selector("[data-run-badge]:has-text('succeeded')", timeout=30_000)
        assert page.problems == []


def problems_text(page) -> str:
    return page.locator(".problems").text_content()


def test_a_broken_reference_is_pinned_on_its_node_and_field_and_goes_when_fixed(server, ada):
    services.create_flow(ada, sample("router"), slug="router")
    with chromium_page({"width": 1600, "height": 1000}) as page:
        open_editor(page, server, "/flows/router/edit/")
        select_node(page, "echo")
        template = field(page, "/nodes/4/params/template")
        # The picker offers the ancestors' outputs only (docs/dsl.md §3).
        offered = template.locator("select.reference-picker option").all_inner_texts()
        assert "{{start.text}}" in offered and "{{measure.length}}" in offered
        assert "{{route.branch}}" in offered
        assert not any(name in text for text in offered for name in ("summarize", "merge", "end"))

        template.locator("textarea").fill("Short: {{nobody.text}}")
        wait_checked(page)
        expect(node_box(page, "echo").locator(".problem-badge")).to_have_text("1")
        assert node_box(page, "measure").locator(".problem-badge").count() == 0
        expect(template.locator(".field-problems")).to_contain_text("unknown_reference")
        assert "/nodes/4/params/template" in problems_text(page)
        screenshot(page, "editor-problem.png", "editor-problem.png")

        template.locator("textarea").fill("Short: {{summarize.text}}")
        wait_checked(page)
        expect(template.locator(".field-problems")).to_contain_text("not_an_ancestor")
        # Saved with a problem: refused, said so, and nothing lost on either side.
        action(page, "Save")
        expect(page.locator(".editor-message")).to_contain_text("Not saved")
        expect(page.locator(".editor")).to_have_attribute("data-dirty", "true")
        assert draft_of("router") == sample("router")
        assert template.locator("textarea").input_value() == "Short: {{summarize.text}}"

        template.locator("textarea").fill("Short: {{start.text}}")
        wait_checked(page)
        expect(node_box(page, "echo").locator(".problem-badge")).to_have_count(0)
        expect(template.locator(".field-problems")).to_have_count(0)
        assert problems_text(page).startswith("No problems")
        # The refused save is the one request that failed.
        assert page.problems == ["console: Failed to load resource: the server responded with "
                                 "a status of 400 (Bad Request)"]


def test_a_problem_inside_an_iteration_body_leads_into_the_nested_canvas(server, ada):
    broken = sample("batch")
    broken["nodes"][1]["params"]["body"]["nodes"][1]["inputs"]["word"] = "{{nothing.here}}"
    services.create_flow(ada, sample("batch"), slug="batch")
    with chromium_page({"width": 1600, "height": 1000}) as page:
        open_editor(page, server, "/flows/batch/edit/")
        action(page, "JSON")
        page.fill("#json-text", json.dumps(broken, indent=2))
        page.get_by_role("button", name="Apply the JSON").click()
        wait_checked(page)
        # On the flow's canvas the problem is pinned on the iteration node that holds it.
        expect(node_box(page, "each").locator(".problem-badge")).to_have_text("1")
        page.locator(".problems li button").first.click()
        expect(page.locator(".graph-path")).to_contain_text("each (body)")
        expect(page.locator(".react-flow__node")).to_have_count(3)
        word = field(page, "/nodes/1/params/body/nodes/1/inputs/word")
        expect(word.locator(".field-problems")).to_contain_text("unknown_reference")
        # Inside the body the picker offers the item, the body's own ancestors and the outer
        # ancestors of the iteration node.
        offered = word.locator("select.reference-picker option").all_inner_texts()
        assert {"{{item}}", "{{index}}", "{{start.words}}"} <= set(offered)
        word.locator("select.reference-picker").select_option("item")
        word.locator("input").first.fill("{{item}}")
        wait_checked(page)
        assert problems_text(page).startswith("No problems")
        page.locator(".graph-path").get_by_role("button", name="Batch shout").click()
        expect(page.locator(".react-flow__node")).to_have_count(3)
        expect(node_box(page, "each").locator(".problem-badge")).to_have_count(0)
        saved(page)
        assert document_digest(draft_of("batch")) == document_digest(sample("batch"))

        # The body opens from its node's panel too; what is added there lands in the body.
        select_node(page, "each")
        page.get_by_role("button", name="Edit the body (3 nodes)").click()
        expect(page.locator(".graph-path")).to_contain_text("each (body)")
        page.locator('.palette-item[data-type="wait"]').click()
        expect(page.locator(".react-flow__node")).to_have_count(4)
        page.get_by_label("Connect output to a node").select_option("end")
        select_node(page, "start")
        page.get_by_label("Connect output to a node").select_option("wait")
        wait_checked(page)
        assert problems_text(page).startswith("No problems"), problems_text(page)
        page.keyboard.press("Control+s")  # from the focused select: Ctrl+S saves anywhere
        page.wait_for_selector(".editor[data-dirty=false]")
        body = draft_of("batch")["nodes"][1]["params"]["body"]
        assert [node["id"] for node in body["nodes"]] == ["start", "shout", "end", "wait"]
        assert {"from": "start", "to": "wait"} in body["edges"]
        assert {"from": "wait", "to": "end"} in body["edges"]


def test_undo_redo_keyboard_only_editing_and_the_unsaved_guard(server, ada):
    services.create_flow(ada, sample("router"), slug="router")
    with chromium_page() as page:
        open_editor(page, server, "/flows/router/edit/")
        nodes = page.locator(".react-flow__node")
        edges = page.locator(".react-flow__edge")

        # From the keyboard: a palette button, the connection list, the node's Delete key.
        page.locator('.palette-item[data-type="wait"]').focus()
        page.keyboard.press("Enter")
        expect(nodes).to_have_count(8)
        expect(page.locator(".editor")).to_have_attribute("data-dirty", "true")
        # The arrows move through the list and only Enter connects (measure … merge, end).
        connect_to = page.get_by_label("Connect output to a node")
        connect_to.focus()
        for _ in range(6):
            page.keyboard.press("ArrowDown")
        expect(edges).to_have_count(7)
        page.keyboard.press("Enter")
        expect(edges).to_have_count(8)
        expect(page.locator('.react-flow__edge[aria-label="Edge from wait to end"]')).to_have_count(1)
        page.get_by_label("Connect output to a node").focus()
        page.keyboard.press("Escape")
        node_box(page, "wait").focus()
        page.keyboard.press("Delete")
        expect(nodes).to_have_count(7)
        expect(edges).to_have_count(7)

        # Undo brings back the node and its edge; redo takes them again.
        page.locator(".react-flow__pane").click()
        page.keyboard.press("Control+z")
        expect(nodes).to_have_count(8)
        expect(edges).to_have_count(8)
        page.keyboard.press("Control+Shift+z")
        expect(nodes).to_have_count(7)
        page.keyboard.press("Control+z")
        page.keyboard.press("Control+z")
        expect(edges).to_have_count(7)
        expect(nodes).to_have_count(8)

        # The keystrokes of one field make one step.
        select_node(page, "merge")
        field(page, "/nodes/5/title").locator("input").type("Merge the branches")
        expect(node_box(page, "merge")).to_contain_text("Merge the branches")
        page.locator(".react-flow__pane").click()
        page.keyboard.press("Control+z")
        expect(node_box(page, "merge")).not_to_contain_text("Merge the branches")
        page.get_by_role("button", name="Redo").click()
        expect(node_box(page, "merge")).to_contain_text("Merge the branches")

        # Undone to the start, the document is the saved one again.
        while page.get_by_role("button", name="Undo").is_enabled():
            page.get_by_role("button", name="Undo").click()
        expect(page.locator(".editor")).to_have_attribute("data-dirty", "false")
        expect(nodes).to_have_count(7)

        # A type dragged from the palette onto the canvas; then leaving asks first.
        page.locator('.palette-item[data-type="template"]').drag_to(
            page.locator(".react-flow__pane"), target_position={"x": 60, "y": 60})
        expect(nodes).to_have_count(8)
        asked = []
        page.on("dialog", lambda dialog: (asked.append(dialog.type), dialog.dismiss()))
        page.locator(".editor-title a", has_text="Flows").click()
        page.wait_for_timeout(500)
        assert asked == ["beforeunload"]
        assert page.url.endswith("/flows/router/edit/")
        assert draft_of("router") == sample("router")
        assert page.problems == []


def test_the_json_view_round_trips_every_sample_without_changing_its_hash(server, ada):
    for name in SAMPLE_NAMES:
        services.create_flow(ada, sample("hello"), slug=name)
    with chromium_page() as page:
        log_in(page, server, "/flows/", "ada")
        # What cannot be drawn is refused, and the text stays to be mended.
        page.goto(f"{server}/flows/{SAMPLE_NAMES[0]}/edit/")
        page.wait_for_selector(".react-flow__node")
        action(page, "JSON")
        for text, says in [('{"nodes": [', "Not JSON"), ('{"dsl": "astron/v1", "nodes": {}}',
                                                          '"nodes" and "edges"')]:
            page.fill("#json-text", text)
            page.get_by_role("button", name="Apply the JSON").click()
            expect(page.locator(".json-view [role=alert]")).to_contain_text(says)
            assert page.input_value("#json-text") == text
        expect(page.locator(".editor")).to_have_attribute("data-dirty", "false")
        for name in SAMPLE_NAMES:
            page.goto(f"{server}/flows/{name}/edit/")
            page.wait_for_selector(".react-flow__node")
            action(page, "JSON")
            page.fill("#json-text", (SAMPLES / f"{name}.json").read_text())
            page.get_by_role("button", name="Apply the JSON").click()
            top_level = len(sample(name)["nodes"])
            expect(page.locator(".react-flow__node")).to_have_count(top_level)
            saved(page)
            assert document_digest(draft_of(name)) == document_digest(sample(name)), name
            # And back: the JSON view of the saved document is the sample.
            page.reload()
            page.wait_for_selector(".react-flow__node")
            action(page, "JSON")
            assert json.loads(page.input_value("#json-text")) == sample(name), name
        assert page.problems == []


def test_moving_a_node_changes_only_its_ui(server, ada):
    services.create_flow(ada, sample("router"), slug="router")
    with chromium_page() as page:
        open_editor(page, server, "/flows/router/edit/")
        # Two nodes selected (the second with Shift held), dragged together by one of them.
        node_box(page, "echo").click()
        node_box(page, "summarize").click(modifiers=["Shift"])
        expect(page.locator(".react-flow__node.selected")).to_have_count(2)
        before = {name: node_box(page, name).bounding_box()["y"] for name in ("echo", "summarize")}
        box = node_box(page, "echo").bounding_box()
        page.mouse.move(box["x"] + 40, box["y"] + 20)
        page.mouse.down()
        page.mouse.move(box["x"] + 40, box["y"] + 140, steps=8)
        page.mouse.up()
        shifts = {name: node_box(page, name).bounding_box()["y"] - before[name] for name in before}
        assert shifts["echo"] > 60 and abs(shifts["echo"] - shifts["summarize"]) < 1, shifts
        # The whole drag is one step: one undo puts both back, one redo moves them again.
        page.locator(".react-flow__pane").click(position={"x": 5, "y": 5})
        page.keyboard.press("Control+z")
        expect(page.locator(".editor")).to_have_attribute("data-dirty", "false")
        assert node_box(page, "echo").bounding_box()["y"] == before["echo"]
        page.keyboard.press("Control+Shift+z")
        expect(page.locator(".editor")).to_have_attribute("data-dirty", "true")
        node_box(page, "measure").focus()
        page.keyboard.press("Enter")
        for _ in range(3):
            page.keyboard.press("ArrowDown")
        saved(page)
        stored, original = draft_of("router"), sample("router")
        moved = {node["id"]: node for node in stored["nodes"] if "ui" in node}
        assert set(moved) == {"echo", "summarize", "measure"}
        assert without_ui(stored) == without_ui(original)
        assert [node["id"] for node in stored["nodes"]] == [node["id"] for node in original["nodes"]]
        assert stored["edges"] == original["edges"]
        assert page.problems == []


def test_secrets_are_offered_where_the_dsl_allows_them_only(server, ada):
    from flows.services import secrets as secret_service

    secret_service.create_secret(ada, "API_KEY", "never shown 77")
    services.create_flow(ada, {
        "dsl": "astron/v1", "name": "Fetch",
        "nodes": [{"id": "start", "type": "start", "params": {"inputs": {}}},
                  {"id": "fetch", "type": "http", "params": {"url": "https://example.com/"}},
                  {"id": "note", "type": "template", "params": {"template": "{{fetch.status}}"}},
                  {"id": "end", "type": "end", "inputs": {}}],
        "edges": [{"from": "start", "to": "fetch"}, {"from": "fetch", "to": "note"},
                  {"from": "note", "to": "end"}]}, slug="fetch")
    with chromium_page() as page:
        open_editor(page, server, "/flows/fetch/edit/")
        select_node(page, "fetch")
        url = field(page, "/nodes/1/params/url")
        assert "{{secrets.API_KEY}}" in url.locator("option").all_inner_texts()
        add_entry(page, "/nodes/1/params/headers", "headers", "authorization")
        header = field(page, "/nodes/1/params/headers/authorization")
        header.locator("input").first.fill("Bearer ")
        pick(page, "/nodes/1/params/headers/authorization", "secrets.API_KEY")
        select_node(page, "note")
        offered = field(page, "/nodes/2/params/template").locator("option").all_inner_texts()
        assert "{{fetch.status}}" in offered
        assert not any("secrets" in text for text in offered)
        # A template param offers the node's own inputs by name too (dsl.md §3, rule 6); a
        # value expression does not.
        add_entry(page, "/nodes/2/inputs", "inputs", "code")
        offered = field(page, "/nodes/2/params/template").locator("option").all_inner_texts()
        assert offered[1] == "{{code}}"
        assert "{{code}}" not in field(page, "/nodes/2/inputs/code").locator(
            "option").all_inner_texts()
        pick(page, "/nodes/2/inputs/code", "fetch.status")
        wait_checked(page)
        assert problems_text(page).startswith("No problems")
        saved(page)
        assert draft_of("fetch")["nodes"][1]["params"]["headers"] == {
            "authorization": "Bearer {{secrets.API_KEY}}"}
        assert "never shown 77" not in page.content()
        assert page.problems == []


def test_a_new_flow_with_a_taken_slug_is_refused_and_kept_on_screen(server, ada):
    services.create_flow(ada, sample("hello"), slug="taken")
    with chromium_page() as page:
        open_editor(page, server, "/flows/new/")
        page.fill("#flow-slug", "taken")
        action(page, "Save")
        expect(page.locator("#flow-slug-note")).to_contain_text("taken")
        expect(page.locator(".editor-message")).to_contain_text("Not saved")
        assert page.url.endswith("/flows/new/")
        page.fill("#flow-slug", "fresh")
        saved(page)
        assert page.url.endswith("/flows/fresh/edit/")
        assert draft_of("fresh")["name"] == "Untitled flow"
        assert draft_of("taken") == sample("hello")


def test_renaming_a_node_follows_its_references_but_not_into_a_body_with_its_own(server, ada):
    document = {
        "dsl": "astron/v1", "name": "Shadowed",
        "nodes": [
            {"id": "start", "type": "start", "params": {"inputs": {}}},
            {"id": "calc", "type": "code", "params": {"code": "def main():\n    return {'n': 2}"},
             "outputs": {"n": {"type": "integer"}}},
            {"id": "each", "type": "iteration", "params": {"items": [1, 2], "body": {
                "nodes": [{"id": "bstart", "type": "start"},
                          {"id": "calc", "type": "template", "params": {"template": "{{item}}"}},
                          {"id": "bend", "type": "end", "inputs": {"t": "{{calc.text}}"}}],
                "edges": [{"from": "bstart", "to": "calc"}, {"from": "calc", "to": "bend"}]}}},
            {"id": "end", "type": "end", "inputs": {"n": "{{calc.n}}", "all": "{{each.results}}"}}],
        # `calc` outside is not an ancestor of `each`: inside, `calc` is the body's own.
        "edges": [{"from": "start", "to": "calc"}, {"from": "start", "to": "each"},
                  {"from": "calc", "to": "end"}, {"from": "each", "to": "end"}]}
    services.create_flow(ada, document, slug="shadowed")
    with chromium_page() as page:
        open_editor(page, server, "/flows/shadowed/edit/")
        select_node(page, "calc")
        for refused in ("item", "each", "Bad id"):
            page.fill("#node-id", refused)
            page.press("#node-id", "Enter")
            expect(page.locator("#node-id-note")).to_contain_text("Not renamed")
        page.fill("#node-id", "total")
        page.press("#node-id", "Enter")
        wait_checked(page)
        assert problems_text(page).startswith("No problems"), problems_text(page)
        saved(page)
        stored = draft_of("shadowed")
        assert stored["nodes"][1]["id"] == "total"
        assert stored["nodes"][3]["inputs"]["n"] == "{{total.n}}"
        assert {"from": "total", "to": "end"} in stored["edges"]
        body = stored["nodes"][2]["params"]["body"]
        assert body["nodes"][1]["id"] == "calc" and body["nodes"][2]["inputs"]["t"] == "{{calc.text}}"


def test_removing_a_list_item_takes_its_half_typed_json_with_it(server, ada):
    services.create_flow(ada, sample("router"), slug="router")
    with chromium_page() as page:
        open_editor(page, server, "/flows/router/edit/")
        select_node(page, "route")
        conditions = "/nodes/2/params/cases/0/conditions"
        field(page, conditions).get_by_role("button", name="Add a condition").click()
        right = field(page, f"{conditions}/0/right")
        right.get_by_label("Kind of value of right").select_option("json")
        right.locator("input").fill("[1,")
        expect(right.locator(".field-note")).to_contain_text("Not JSON yet")

        page.get_by_role("button", name="Remove condition 1 of conditions").click()

        # The condition left is the one added: blank, as text, with no note of the other's.
        left_over = field(page, f"{conditions}/0/right")
        expect(left_over.get_by_label("Kind of value of right")).to_have_value("text")
        expect(left_over.locator(".field-note")).to_have_count(0)
        assert page.locator(f'.side [data-pointer^="{conditions}/"][data-pointer$="/right"]'
                            ).count() == 1
        action(page, "Undo")  # the removed condition comes back, its value as it was stored
        select_node(page, "route")
        expect(field(page, f"{conditions}/0/right").locator("textarea, input").first
               ).to_have_value("{{start.limit}}")


def test_a_subflow_is_offered_the_other_flows_and_an_llm_the_servers_providers(server, ada):
    services.create_flow(ada, sample("router"), slug="router")
    services.create_flow(ada, sample("hello"), slug="greet")
    with chromium_page() as page:
        open_editor(page, server, "/flows/router/edit/")
        select_node(page, "summarize")
        provider = field(page, "/nodes/3/params/provider").locator("input")
        assert choices_of(provider) == ["echo"]
        add_node(page, "subflow", "child")
        child = page.locator('.side [data-pointer$="/params/flow"]').first.locator("input")
        assert choices_of(child) == ["greet"]  # not the flow being edited
        child.fill("greet")  # a pick from the list is typed text like any other
        expect(child).to_have_value("greet")


def choices_of(text_input) -> list[str]:
    """The suggestions a text field offers (its <datalist>)."""
    list_id = text_input.get_attribute("list")
    assert list_id, "the field offers no list"
    return text_input.page.evaluate(
        "id => [...document.getElementById(id).options].map(option => option.value)", list_id)
