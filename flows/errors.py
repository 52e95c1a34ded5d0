"""The one error type of the platform's services and the one shape of every error body."""

from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    """A refused request: an HTTP status, a code from docs/api.md, a message and details."""

    def __init__(self, status: int, code: str, message: str, details: list[Any] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or []

    def body(self) -> dict[str, Any]:
        return error_body(self.code, self.message, self.details)


class LeaseLost(Exception):
    """A write by a worker that no longer holds the run's lease was refused (fencing)."""


def error_body(code: str, message: str, details: list[Any] | None = None) -> dict[str, Any]:
    """The one shape of every refusal, over HTTP and the socket (docs/api.md, Errors)."""
    return {"error": {"code": code, "message": message, "details": details or []}}
