"""Errors a technician can act on.

Every failure that reaches a person (CLI line, problem+json ``detail``, TUI notification) is one of
these, with a message that says what was wrong and what to do next. Anything else is a bug.
"""

from __future__ import annotations


class AgentError(Exception):
    """Base class: ``str(err)`` is the one clear line shown to the technician."""

    status = 400  # HTTP status the control plane maps this error to

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        if status is not None:
            self.status = status


class ModelError(AgentError):
    """A model file that is missing, unreadable, not a detector, or not usable by the backend."""

    status = 422


class SourceError(AgentError):
    """A source URI that cannot be opened or parsed."""

    status = 422


class BackendUnavailable(AgentError):
    """The backend's runtime is not installed or cannot see its accelerator."""

    status = 409


class NotFound(AgentError):
    status = 404


class Conflict(AgentError):
    status = 409


class ImageError(AgentError):
    """An image file that is missing or cannot be decoded."""

    status = 422
