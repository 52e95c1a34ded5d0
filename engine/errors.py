"""Error values shared by validation, compilation and execution.

Validation problems and node errors (docs/dsl.md §7) are plain values with codes;
they are raised or returned the same way everywhere and turned into HTTP answers in one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Errors worth another attempt (docs/dsl.md §2, `retry`). `http_status` is transient only for
# 429 and 5xx, which the node marks with `details["status"]`.
TRANSIENT_CODES = frozenset({"timeout", "code_error", "network_error", "provider_error"})


@dataclass(frozen=True, slots=True)
class Problem:
    """One reason a document is invalid: where (JSON Pointer), what (code) and why."""

    path: str
    code: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"path": self.path, "code": self.code, "message": self.message}


class DocumentInvalid(Exception):
    """Raised by `compile_plan` for a document with problems; carries all of them."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        summary = "; ".join(f"{p.path or '/'}: {p.code}" for p in problems[:5])
        super().__init__(f"invalid document ({len(problems)} problems): {summary}")


class InputsInvalid(Exception):
    """Raised when run inputs do not match the start node's declarations."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("; ".join(p.message for p in problems))


@dataclass(slots=True)
class NodeError(Exception):
    """The one error object of docs/dsl.md §7, raised by node strategies and stored everywhere."""

    code: str
    message: str
    node: str | None = None
    attempt: int | None = None
    details: Any = field(default=None)

    def __post_init__(self) -> None:
        Exception.__init__(self, self.message)

    @property
    def transient(self) -> bool:
        if self.code == "http_status":
            status = (self.details or {}).get("status") if isinstance(self.details, dict) else None
            return status == 429 or (isinstance(status, int) and status >= 500)
        return self.code in TRANSIENT_CODES

    def to_dict(self) -> dict[str, Any]:
        error = {"code": self.code, "message": self.message, "node": self.node,
                 "attempt": self.attempt}
        if self.details is not None:
            error["details"] = self.details
        return error

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NodeError:
        return cls(data["code"], data["message"], data.get("node"), data.get("attempt"),
                   data.get("details"))


def run_error(code: str, message: str) -> dict[str, Any]:
    """A run-level error object (`run_timeout`, `max_steps`, `cancelled`)."""
    return {"code": code, "message": message, "node": None, "attempt": None}
