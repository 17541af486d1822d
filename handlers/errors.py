"""The error hierarchy of the domain.

Each error carries a message key and parameters; the dispatcher turns it into
a reply in the user's language in one place.
"""

from __future__ import annotations

from typing import Any


class HandlerError(Exception):
    """An error the user should be told about, politely, in their language."""

    key = "error.internal"

    def __init__(self, **params: Any) -> None:
        super().__init__(self.key)
        self.params = params


class NotAllowed(HandlerError):
    key = "error.not_allowed"


class UnknownCommand(HandlerError):
    key = "error.unknown_command"


class WrongRoom(HandlerError):
    key = "error.wrong_room"


class CaseNotFound(HandlerError):
    key = "error.case_not_found"


class IllegalTransition(HandlerError):
    key = "error.illegal_transition"

    def __init__(self, old: str, new: str) -> None:
        super().__init__(old=old, new=new)
        self.old, self.new = old, new


class ConcurrentChange(HandlerError):
    key = "error.concurrent_change"


class RoomCreationFailed(HandlerError):
    key = "error.room_creation_failed"


class AlreadyHandled(Exception):
    """The event was handled before (a re-delivery after a crash): do nothing, say nothing."""
