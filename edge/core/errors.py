"""The one family of user-facing errors. Anything else escaping the CLI is a bug.

Every user or environment error, the host's and the agent's, is a
`device_agent.errors.AgentError` (a message, and a hint that names the fix): `EdgeError`
and its subclasses are the host's. So an AgentError that a shared device helper raises on
the host (building or checking a manifest, reading a signature, checking calibration data)
is already a user error: the CLI prints it with its hint and exits 1, and a fleet command
makes it that device's failed row. Catch `UserError` where an error becomes output.
"""

from __future__ import annotations

from device_agent.errors import AgentError

UserError = AgentError  # the root of the family, under the name the host catches it by


class EdgeError(AgentError):
    """A user or environment error on the host: a message, and a hint that names the fix."""


class ModelError(EdgeError):
    """The model path is not a usable SavedModel."""


class RecipeError(EdgeError):
    """A recipe is unknown or does not follow the schema."""


class DeviceError(EdgeError):
    """A device is unknown, unreachable, or its agent failed."""
