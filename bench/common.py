"""Shared helpers of the benchmarks: timing, a printed table and a JSON result file."""

from __future__ import annotations

import json
import platform
import statistics
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    if not ordered:
        return float("nan")
    position = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[position]


def median(samples: list[float]) -> float:
    return statistics.median(samples)


def machine() -> dict[str, Any]:
    """Where and when: docs/benchmarks.md quotes each figure with its date and the load
    average (1, 5 and 15 minutes), since other work on the machine moves them by tens of
    percent."""
    import os

    return {"python": platform.python_version(), "cpus": os.cpu_count(),
            "platform": platform.platform(), "when": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                   time.gmtime()),
            "load_average": [round(load, 2) for load in os.getloadavg()]}


def report(name: str, rows: list[dict[str, Any]], columns: list[str]) -> Path:
    """Print rows as a table and write them, with the machine, to bench/results/NAME.json."""
    widths = {c: max(len(c), *(len(_cell(r.get(c))) for r in rows)) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns))
    print("  ".join("-" * widths[c] for c in columns))
    for row in rows:
        print("  ".join(_cell(row.get(c)).ljust(widths[c]) for c in columns))
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    about = machine()
    path.write_text(json.dumps({"benchmark": name, "machine": about, "rows": rows}, indent=2))
    print(f"\nload average {about['load_average']}; written to {path}")
    return path


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def django_setup(database_url: str | None = None) -> None:
    """Django for a benchmark process: `database_url` (else the environment's), a secret
    key, no throttling in the way, the schema migrated, and the heap settled as a serving
    process settles it (astron/asgi.py)."""
    import os
    import secrets

    if database_url is not None:
        os.environ["DATABASE_URL"] = database_url
    os.environ["DJANGO_SETTINGS_MODULE"] = "astron.settings"
    os.environ["API_RATE"] = "1000000/second"
    os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(64))
    os.environ.setdefault("SECRETS_KEY", secrets.token_urlsafe(32))
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", interactive=False, verbosity=0)
    from astron.heap import freeze_loaded_objects

    freeze_loaded_objects()
