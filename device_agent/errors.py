"""Errors the agent reports to the host as data (message + hint), never as tracebacks.

`AgentError` is also the root of the host's user errors (`edge.errors.EdgeError`
subclasses it), so the helpers the host shares raise the one family on both sides."""

from __future__ import annotations

from typing import Optional


class AgentError(Exception):
    """A user or environment problem, with a hint that names the fix."""

    def __init__(self, message: str, hint: Optional[str] = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class BackendUnavailable(AgentError):
    """The requested backend cannot run here (e.g. TensorFlow built without TensorRT)."""
