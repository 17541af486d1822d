"""The storage package's errors: one hierarchy, so callers can catch them in one place."""

from __future__ import annotations


class StorageError(Exception):
    """Base class of every error raised deliberately by `storage`."""


class UnsupportedDatabaseError(StorageError):
    """The database URL names a backend other than SQLite (aiosqlite) or PostgreSQL (asyncpg)."""


class CaseNotFoundError(StorageError):
    """No case has the given id; a caller bug or a stale id, never a lost race."""

    def __init__(self, case_id: int) -> None:
        super().__init__(f"no case with id {case_id}")
        self.case_id = case_id
