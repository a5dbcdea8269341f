"""Errors in the Google API shape: {"error": {"code", "status", "message", "details"}}."""
from __future__ import annotations

STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}


class ApiError(Exception):
    """An error answered to the client as JSON; never carries internals (paths, traces, versions)."""

    def __init__(self, code: int, message: str, details: list | None = None,
                 headers: dict[str, str] | None = None, *, field: str | None = None,
                 problem: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        if field is not None:  # one bad field: the details name it
            details = [_bad_request_detail([{"field": field, "description": problem or message}])]
        self.details = details or []
        self.headers = headers or {}

    @property
    def violations(self) -> list[dict]:
        """The field violations among the details (empty when the error is not about fields)."""
        return [v for d in self.details for v in d.get("fieldViolations", ())]

    def body(self) -> dict:
        return {"error": {"code": self.code, "status": STATUS_NAMES[self.code], "message": self.message,
                          "details": self.details}}


def field_violations(errors: dict, prefix: str = "") -> list[dict]:
    """Flatten Marshmallow's nested messages into google.rpc.BadRequest field violations."""
    violations = []
    for key, value in errors.items():
        if key == "_schema":
            path = prefix or "body"
        elif isinstance(key, int):
            path = f"{prefix}[{key}]"
        else:
            path = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict):
            violations.extend(field_violations(value, path))
        else:
            violations.extend({"field": path, "description": str(m)} for m in value)
    return violations


def _bad_request_detail(violations: list[dict]) -> dict:
    return {"@type": "type.googleapis.com/google.rpc.BadRequest", "fieldViolations": violations}


def bad_request(message: str, violations: list[dict], headers: dict[str, str] | None = None) -> ApiError:
    """A 400 whose details name every bad field."""
    return ApiError(400, message, [_bad_request_detail(violations)], headers)
