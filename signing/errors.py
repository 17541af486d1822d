"""The signing service's errors, each with its HTTP status and a stable code.

Raised by the backend, turned into ``{"error": CODE, "message": ...}`` in one
place (the web app's error middleware).
"""

from __future__ import annotations


class SigningError(Exception):
    status = 400
    code = "bad_request"

    def __init__(self, message_key: str | None = None, **params: object) -> None:
        super().__init__(message_key or self.code)
        self.message_key = message_key or f"error.{self.code}"
        self.params = params


class BadRequest(SigningError):
    status, code = 400, "bad_request"


class Unauthorized(SigningError):
    status, code = 401, "not_identified"


class Forbidden(SigningError):
    status, code = 403, "forbidden"


class WrongBrowser(Forbidden):
    """Identification is finished only in the browser that started it (its pre-auth cookie)."""

    code = "wrong_browser"

    def __init__(self) -> None:
        super().__init__("error.wrong_browser")


class NotFound(SigningError):
    status, code = 404, "not_found"


class AlreadyDecided(SigningError):
    status, code = 409, "already_decided"


class DocumentChanged(SigningError):
    """The stored decision no longer matches the SHA-256 the signer was shown."""

    status, code = 409, "document_changed"


class Expired(SigningError):
    status, code = 410, "expired"


class TooManyAttempts(SigningError):
    status, code = 429, "too_many_attempts"


class Unavailable(SigningError):
    status, code = 503, "unavailable"
