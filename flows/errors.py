"""The one error type of the platform's services, turned into HTTP answers in one place."""

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
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


def not_found(what: str) -> ServiceError:
    return ServiceError(404, "not_found", f"{what} does not exist")
