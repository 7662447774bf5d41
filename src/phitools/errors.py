"""Typed errors. The library raises these; the CLI turns them into one-line messages in one place.

Every message should say what went wrong, where (file and line when there is one), and what to do next.
"""

from __future__ import annotations


class PhitoolsError(Exception):
    """Base class: a failure we can explain to the user in one line."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class UsageError(PhitoolsError):
    """The command line itself is wrong (bad flag value, conflicting options)."""

    exit_code = 2


class ConfigError(PhitoolsError):
    """A config file or spec file is invalid."""

    exit_code = 2


class DataError(PhitoolsError):
    """Input data is malformed: bad JSON, invalid UTF-8, truncated compression, missing fields, empty input."""

    def __init__(self, message: str, *, source: str | None = None, line: int | None = None, hint: str | None = None):
        self.source = source
        self.line = line
        where = ""
        if source is not None:
            where = f"{source}:{line}: " if line is not None else f"{source}: "
        super().__init__(where + message, hint=hint)
        self.reason = message


class BusyError(PhitoolsError):
    """An output is being written by another process right now (its lock is held)."""


class CheckpointError(PhitoolsError):
    """A checkpoint is missing, incomplete, tampered with, or of the wrong shape."""


class EndpointError(PhitoolsError):
    """An LLM endpoint could not be used (unreachable, auth, protocol)."""
