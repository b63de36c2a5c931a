"""The one family of user-facing errors. Anything else escaping the CLI is a bug."""

from __future__ import annotations


class EdgeError(Exception):
    """A user or environment error: a message, and a hint that names the fix."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class ModelError(EdgeError):
    """The model path is not a usable SavedModel."""


class RecipeError(EdgeError):
    """A recipe is unknown or does not follow the schema."""


class DeviceError(EdgeError):
    """A device is unknown, unreachable, or its agent failed."""
