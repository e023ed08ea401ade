"""What the store refuses, as exceptions the edges map to answers."""

from __future__ import annotations


class StoreError(Exception):
    """Base of every refusal by the store."""


class NotFound(StoreError):
    """The job log named or numbered does not exist."""


class InvalidTransition(StoreError):
    """A status change that the job-log life cycle does not allow."""


class InvalidMessage(StoreError, ValueError):
    """A detail message that cannot be stored (empty or blank)."""


class IncompatibleSchema(StoreError):
    """The database file holds tables that do not match the job-log schema."""
