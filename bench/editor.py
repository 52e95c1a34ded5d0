"""What the visual editor costs a person, in a real browser against a real server.

    python bench/editor.py                 # SQLite, the embedded default
    python bench/editor.py --postgres      # PostgreSQL + Redis (REDIS_URL db 14)
    python bench/editor.py --sizes 10 200  # other flow sizes
    python bench/editor.py --quick         # one opening of a 10-node flow

One daphne serving `astron.asgi:application` (static files from the apps' folders, as the
browser tests serve them), Debian's Chromium through Playwright. For flows that are chains of
N `template` nodes, each referring to the one before (nodes without `ui`, so the layout runs):

- `open`: from navigation to the graph drawn and the first validation answered;
- `validate`: `POST /api/flows/validate/` as the browser timed it, after the flow's name is
  typed into, a letter at a time;
- `typed → checked`: from a key going down to the problems on screen being for the text
  it typed, by the page's clock (the 300 ms debounce included);
- `save`: `PUT /api/flows/<slug>/` as the browser timed it;
- `bundle`: the editor's script and style, as sent (raw bytes; what WhiteNoise compresses
  depends on the deployment).

Medians of `--repeat` openings. Prints a table and writes bench/results/editor.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from itertools import pairwise
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import report  # noqa: E402
from bench.events import Server, server_environment  # noqa: E402

PASSWORD = "a bench's password 42"
CHROMIUM = "/usr/bin/chromium"
SETUP = r"""
import json, os, sys
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "astron.settings")
import django
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0, interactive=False)
from django.contrib.auth.models import User
from flows import services
user = User.objects.create_user("bench", password=sys.argv[2])
for slug, dsl in json.loads(sys.argv[1]).items():
    services.create_flow(user, dsl, slug=slug)
"""
TIMED = """(path) => performance.getEntriesByType("resource")
  .filter((entry) => entry.name.endsWith(path)).map((entry) => entry.duration)"""
# In the page: when each key went down, and when the editor last said its problems were
# checked (data-checking back to false), by the page's own clock.
WATCH = """() => {
  window.benchKeys = [];
  window.benchChecked = [];
  document.addEventListener("keydown", () => window.benchKeys.push(performance.now()), true);
  new MutationObserver(() => {
    if (document.querySelector(".editor").dataset.checking === "false") {
      window.benchChecked.push(performance.now());
    }
  }).observe(document.querySelector(".editor"), { attributes: true, attributeFilter: ["data-checking"] });
}"""
KEY_TO_CHECKED = """() => window.benchKeys.map((key) => {
  const after = window.benchChecked.find((at) => at > key);
  return after === undefined ? null : after - key;
}).filter((each) => each !== null)"""


def chain(size: int) -> dict[str, Any]:
    nodes: list[dict[str, Any]] = [{"id": "start", "type": "start", "params": {"inputs": {
        "text": {"type": "string", "default": "x"}}}}]
    previous = "{{start.text}}"
    for index in range(size):
        nodes.append({"id": f"t{index}", "type": "template",
                      "params": {"template": f"{index}: {previous}"}})
        previous = f"{{{{t{index}.text}}}}"
    nodes.append({"id": "end", "type": "end", "inputs": {"last": previous}})
    ids = [node["id"] for node in nodes]
    return {"dsl": "astron/v1", "name": f"Chain of {size}", "nodes": nodes,
            "edges": [{"from": a, "to": b} for a, b in pairwise(ids)]}


def measure(base: str, sizes: list[int], repeat: int) -> list[dict[str, Any]]:
    from playwright.sync_api import sync_playwright

    rows = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM,
                                             args=["--headless", "--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.goto(f"{base}/login/?next=/flows/")
        page.fill("#id_username", "bench")
        page.fill("#id_password", PASSWORD)
        page.click("#login-form button[type=submit]")
        page.wait_for_url(f"{base}/flows/")
        for size in sizes:
            opens, validations, checks, saves = [], [], [], []
            for _ in range(repeat):
                started = time.perf_counter()
                page.goto(f"{base}/flows/chain-{size}/edit/")
                page.wait_for_selector(".react-flow__node")
                page.wait_for_selector(".editor[data-checking=false]")
                opens.append((time.perf_counter() - started) * 1000)
                name = page.locator('.side [data-pointer="/name"] input')
                page.evaluate(WATCH)
                for letter in "abc":
                    name.type(letter)
                    page.wait_for_selector(".editor[data-checking=true]", state="attached")
                    page.wait_for_selector(".editor[data-checking=false]", state="attached")
                checks.extend(page.evaluate(KEY_TO_CHECKED))
                validations.extend(page.evaluate(TIMED, "/api/flows/validate/")[1:])
                page.keyboard.press("Control+s")
                page.wait_for_selector(".editor[data-dirty=false]")
                saves.extend(page.evaluate(TIMED, f"/api/flows/chain-{size}/"))
                page.evaluate("performance.clearResourceTimings()")
            rows.append({"nodes": size + 2, "open_ms": round(statistics.median(opens)),
                         "validate_ms": round(statistics.median(validations), 1),
                         "typed_to_checked_ms": round(statistics.median(checks)),
                         "save_ms": round(statistics.median(saves), 1)})
        browser.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--postgres", action="store_true")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 500])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="one opening of a 10-node flow")
    options = parser.parse_args()
    if options.quick:
        options.sizes, options.repeat = [10], 1
    with tempfile.TemporaryDirectory() as folder:
        environment = server_environment(options.postgres, Path(folder), "editor",
                                         "redis://127.0.0.1:6379/14",
                                         DJANGO_SETTINGS_MODULE="tests.browser.server_settings")
        flows = json.dumps({f"chain-{size}": chain(size) for size in options.sizes})
        subprocess.run([sys.executable, "-c", SETUP, flows, PASSWORD], cwd=ROOT,
                       env=environment, check=True)
        with Server(environment, Path(folder), app="astron.asgi:application") as server:
            rows = measure(server.http, options.sizes, options.repeat)
    bundle = ROOT / "flows" / "static" / "flows" / "editor"
    size_kib = sum((bundle / name).stat().st_size for name in ("editor.js", "editor.css")) / 1024
    for row in rows:
        row["database"] = "postgresql" if options.postgres else "sqlite"
        row["bundle_kib"] = round(size_kib)
    report("editor", rows, ["database", "nodes", "open_ms", "validate_ms", "typed_to_checked_ms",
                            "save_ms", "bundle_kib"])


if __name__ == "__main__":
    main()
