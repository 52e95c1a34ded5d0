"""What the admin pages show the same way: pretty JSON, problem lists, the live run page."""

from __future__ import annotations

import json
from typing import Any

from django.urls import Resolver404, get_script_prefix, resolve
from django.utils.html import format_html, format_html_join

EMPTY = "—"


def pretty_json(value: Any) -> str:
    """A JSON value as an indented, escaped `<pre>` block (the admin's read-only fields)."""
    if value is None:
        return EMPTY
    text = json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False, default=str)
    return format_html('<pre class="astron-json">{}</pre>', text)


def problem_line(problem: dict[str, Any]) -> str:
    """One problem (docs/dsl.md §7) as text: where it is, its code, what is wrong."""
    return f"{problem.get('path') or '(document)'} — {problem.get('code')}: {problem.get('message')}"


def problem_list(problems: list[dict[str, Any]]) -> str:
    if not problems:
        return "None: the draft is valid."
    rows = format_html_join(
        "", "<tr><td><code>{}</code></td><td><code>{}</code></td><td>{}</td></tr>",
        ((p.get("path") or "(document)", p.get("code"), p.get("message")) for p in problems))
    return format_html(
        '<table class="astron-problems"><thead><tr><th>path</th><th>code</th>'
        "<th>message</th></tr></thead><tbody>{}</tbody></table>", rows)


def live_run_url(run_id: Any) -> str | None:
    """The run's live page (`/runs/<id>/`) when the project serves one, else None.

    Resolved by path rather than by URL name: the page belongs to another part of the
    project, and whatever it is called, the address is the contract.
    """
    path = f"runs/{run_id}/"
    try:
        resolve("/" + path)
    except Resolver404:
        return None
    return get_script_prefix() + path


class ReadOnly:
    """For admin classes and inlines that only show: nothing is added, changed or deleted
    through them (rows change through flows.services, or never)."""

    def has_add_permission(self, request: Any, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: Any, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: Any, obj: Any = None) -> bool:
        return False
