"""One event format: engine/events.py defines it, and nothing else makes or names events."""

from __future__ import annotations

import re
from pathlib import Path

from engine import events

ROOT = Path(__file__).resolve().parent.parent
PRODUCTION = ("engine", "flows", "tracing", "astron")


def production_sources(suffix: str) -> list[Path]:
    return [path for package in PRODUCTION for path in (ROOT / package).rglob(f"*{suffix}")
            if "migrations" not in path.parts]


def test_the_run_page_names_the_same_event_types_as_the_engine():
    script = (ROOT / "flows/static/flows/js/state.js").read_text()
    block = re.search(r"export const EVENT = Object\.freeze\(\{(.*?)\}\);", script, re.S)
    assert block is not None, "state.js lost its EVENT object"
    named = dict(re.findall(r"(\w+): \"([\w.]+)\"", block.group(1)))
    assert named == {name: getattr(events, name) for name in dir(events)
                     if getattr(events, name) in events.TYPES}


def test_no_module_but_the_event_module_builds_an_envelope():
    builds = re.compile(r"""["']seq["']\s*:""")
    offenders = [str(path.relative_to(ROOT)) for path in production_sources(".py")
                 if path.name != "events.py" and builds.search(path.read_text())]
    assert offenders == []


def test_no_module_but_the_event_module_spells_an_event_type():
    names = "|".join(sorted({kind.split(".")[1] for kind in events.TYPES}))
    spelled = re.compile(r"""["'](?:run|node)\.(?:""" + names + r""")["']""")
    offenders = [f"{path.relative_to(ROOT)}:{number}"
                 for path in production_sources(".py") + production_sources(".js")
                 if path.name not in ("events.py", "state.js")
                 for number, line in enumerate(path.read_text().splitlines(), 1)
                 if spelled.search(line)]
    assert offenders == []
