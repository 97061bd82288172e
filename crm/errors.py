"""Errors a user can cause. Each has a stable id the API returns with a 4xx."""

from __future__ import annotations


class UserError(Exception):
    """Bad input or an illegal request; nothing was written."""

    status = 422
    error_id = "invalid_request"

    def __init__(self, message: str, *, fields: list[str] | None = None, **details):
        super().__init__(message)
        self.message = message
        self.fields = fields or []
        self.details = details

    def to_json(self) -> dict:
        body = {"error": self.error_id, "message": self.message}
        if self.fields:
            body["fields"] = self.fields
        body.update(self.details)
        return body


class NotFound(UserError):
    status = 404
    error_id = "not_found"


class Conflict(UserError):
    status = 409
    error_id = "conflict"


class IllegalTransition(UserError):
    status = 409
    error_id = "illegal_state_change"


class MissingFields(UserError):
    error_id = "missing_fields"
