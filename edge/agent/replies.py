"""Checks on what a device answers: every reply is untrusted input.

A reply that does not follow the protocol (not JSON, the wrong JSON type, a missing or
mistyped field, an out-of-range value, a line too long) fails that device with one clear
DeviceError, which a fleet run records as that device's result; it never escapes as a
KeyError or TypeError that would take every other device's results down with it.
"""

from __future__ import annotations

import json
import re
from typing import Any

from device_agent.protocol_core import Manifest, PushPlan
from device_agent.wire import ProtocolError
from edge.core.errors import DeviceError

# The longest reply line decoded (a bench result with its telemetry is a few MB at most).
MAX_REPLY_CHARS = 64 << 20

# What the agent's job ids look like (date-time-kind-hex); they go back into argv and paths.
JOB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_VERSION = re.compile(r"\d+\.\d+(\.\d+)?\S{0,32}")
_SHA256 = re.compile(r"[0-9a-f]{64}")


def malformed(device: str, command: str, what: str) -> DeviceError:
    """The error for a reply outside the protocol."""
    return DeviceError(
        f"{device}: malformed reply to `{command}`: {what}",
        f"The device's agent answered outside its protocol (a damaged or foreign agent, or "
        f"a --python that is not a plain Python). Reinstall the agent with `edge agent "
        f"install {device}`, and check the device's --python with `edge fleet ls {device}`.",
    )


def _shown(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def parse(device: str, command: str, line: str, limit: int | None = None) -> Any:
    """One reply line as JSON."""
    limit = MAX_REPLY_CHARS if limit is None else limit
    if len(line) > limit:
        raise malformed(
            device, command, f"a line of {len(line)} characters is too long (the limit is {limit})"
        )
    try:
        return json.loads(line)
    except (ValueError, RecursionError):  # RecursionError: absurdly deep nesting
        raise malformed(device, command, f"not JSON: {_shown(line)}") from None


def decode(device: str, command: str, cls: type[Any], data: Any) -> Any:
    """`cls.from_dict(data)`, with a protocol violation as that device's DeviceError."""
    try:
        return cls.from_dict(data)
    except ProtocolError as exc:
        raise malformed(device, command, str(exc)) from None


def decode_list(device: str, command: str, cls: type[Any], data: Any) -> list[Any]:
    """A JSON list of `cls` objects."""
    if not isinstance(data, list):
        raise malformed(device, command, f"expected a list, got {_shown(data)}")
    out = []
    for i, item in enumerate(data):
        try:
            out.append(cls.from_dict(item))
        except ProtocolError as exc:
            raise malformed(device, command, f"item {i}: {exc}") from None
    return out


def error_object(device: str, command: str, data: Any) -> DeviceError:
    """The agent's own error reply ({"error": str, "hint": str | null}) as a DeviceError."""
    if (
        not isinstance(data, dict)
        or not isinstance(data.get("error"), str)
        or not isinstance(data.get("hint"), (str, type(None)))
    ):
        return malformed(
            device,
            command,
            "an error reply must be an object with a string "
            f"`error` and a string or null `hint`, got "
            f"{_shown(data)}",
        )
    return DeviceError(f"{device}: {data['error']}", data.get("hint"))


def job_id(device: str, data: Any) -> str:
    """The job id in `submit`'s reply."""
    if not isinstance(data, dict) or "job_id" not in data:
        raise malformed(device, "submit", f"expected an object with `job_id`, got {_shown(data)}")
    value = data["job_id"]
    if not isinstance(value, str) or not JOB_ID.fullmatch(value):
        raise malformed(
            device,
            "submit",
            f"job_id: expected an id of letters, digits, '.', '_' and '-', got {_shown(value)}",
        )
    return value


def flag(device: str, command: str, data: Any, key: str) -> bool:
    """A boolean field of a plain JSON object reply (e.g. `cache`'s `hit`)."""
    if not isinstance(data, dict) or not isinstance(data.get(key), bool):
        raise malformed(
            device, command, f"expected an object with a boolean `{key}`, got {_shown(data)}"
        )
    return bool(data[key])


def probe(device: str, data: Any) -> tuple[str, str | None, str | None]:
    """(python version, numpy version or None, agent sha256 or None) from the probe."""
    if not isinstance(data, dict):
        raise malformed(device, "probe", f"expected an object, got {_shown(data)}")
    missing = [k for k in ("python", "numpy", "agent") if k not in data]
    if missing:
        raise malformed(device, "probe", f"missing {', '.join(missing)}")
    python, numpy, agent = data["python"], data["numpy"], data["agent"]
    if not isinstance(python, str) or not _VERSION.fullmatch(python):
        raise malformed(
            device, "probe", f"python: expected a version like 3.8.10, got {_shown(python)}"
        )
    if numpy is not None and not isinstance(numpy, str):
        raise malformed(device, "probe", f"numpy: expected a version or null, got {_shown(numpy)}")
    if agent is not None and (not isinstance(agent, str) or not _SHA256.fullmatch(agent)):
        raise malformed(device, "probe", f"agent: expected a sha256 or null, got {_shown(agent)}")
    return python, numpy, agent


def served(device: str, command: str, data: Any) -> tuple[int, str, str]:
    """(exit, stdout, stderr) of the resident agent's reply."""
    if (
        not isinstance(data, dict)
        or not isinstance(data.get("exit"), int)
        or isinstance(data.get("exit"), bool)
        or not isinstance(data.get("stdout"), str)
        or not isinstance(data.get("stderr"), str)
    ):
        raise malformed(
            device,
            command,
            "the resident agent's reply must be an object with "
            f"an integer `exit` and string `stdout`/`stderr`, "
            f"got {_shown(data)}",
        )
    return data["exit"], data["stdout"], data["stderr"]


def check_plan(device: str, plan: PushPlan, manifest: Manifest, command: str = "push-plan") -> None:
    """A push plan (the reply to `command`) may only ask for blobs of the manifest, at
    their sizes."""
    sizes = {e.sha256: e.size for e in manifest.entries}
    for i, need in enumerate(plan.missing):
        if need.sha256 not in sizes:
            raise malformed(
                device,
                command,
                f"missing[{i}]: blob {_shown(need.sha256)} is not in the manifest",
            )
        if need.size != sizes[need.sha256]:
            raise malformed(
                device,
                command,
                f"missing[{i}]: size {need.size} is not the blob's size {sizes[need.sha256]}",
            )
