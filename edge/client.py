"""AgentClient: the host's side of the agent protocol, over any Transport."""

from __future__ import annotations

import json
import posixpath
from collections.abc import Callable
from typing import Any

from device_agent.protocol import (
    TERMINAL,
    DeviceFacts,
    Event,
    JobSpec,
    JobState,
    ProtocolError,
    result_from_dict,
)

from .agentpkg import agent_filename, build_zipapp
from .devices import Device
from .errors import DeviceError
from .transport import CommandResult, Transport

EXIT_AGENT_ERROR = 3  # device_agent.__main__.EXIT_AGENT_ERROR


class AgentClient:
    """Runs agent commands on one device and decodes their JSON."""

    def __init__(self, device: Device, transport: Transport) -> None:
        self.device = device
        self.transport = transport
        self.agent_path = posixpath.join(device.root, "agent", agent_filename())

    def argv(self, *args: str) -> list[str]:
        return [self.device.python, self.agent_path, "--root", self.device.root, *args]

    def ensure_agent(self) -> None:
        """Install this version's zipapp on the device unless it is there already."""
        probe = self.transport.run(
            [
                self.device.python,
                "-c",
                "import os,sys; sys.exit(0 if os.path.isfile(sys.argv[1]) else 1)",
                self.agent_path,
            ],
            timeout=60,
        )
        if probe.exit_code == 0:
            return
        if probe.exit_code != 1:
            raise DeviceError(
                f"{self.device.name}: cannot run {self.device.python!r}: {probe.tail()}",
                "Set the device's python (Python 3.8+ with numpy) in the fleet inventory.",
            )
        self.transport.put(build_zipapp(), self.agent_path)

    def call(self, *args: str, input: bytes | None = None, timeout: float | None = 120) -> Any:
        """Run an agent command and return its decoded JSON output."""
        result = self.transport.run(self.argv(*args), input=input, timeout=timeout)
        return self._decode(result)

    def _decode(self, result: CommandResult) -> Any:
        last = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
        if result.exit_code == EXIT_AGENT_ERROR and last:
            data = json.loads(last)
            raise DeviceError(f"{self.device.name}: {data.get('error')}", data.get("hint"))
        if result.exit_code != 0 or not last:
            raise DeviceError(
                f"{self.device.name}: agent command {' '.join(result.argv[4:6])} failed "
                f"(exit {result.exit_code}): {result.tail()}",
                "Run `edge info " + self.device.name + "` to check the agent and its Python.",
            )
        try:
            return json.loads(last)
        except json.JSONDecodeError as exc:
            raise DeviceError(f"{self.device.name}: agent printed non-JSON: {last[:200]}") from exc

    def info(self, deep: bool = False) -> DeviceFacts:
        data = self.call("info", *(["--deep"] if deep else []), timeout=300 if deep else 60)
        return DeviceFacts.from_dict(data)

    def submit(self, spec: JobSpec) -> str:
        return str(self.call("submit", "-", "--detach", input=spec.to_json().encode())["job_id"])

    def status(self, job_id: str) -> JobState:
        return JobState.from_dict(self.call("status", job_id))

    def cancel(self, job_id: str) -> JobState:
        return JobState.from_dict(self.call("cancel", job_id))

    def jobs(self) -> list[JobState]:
        return [JobState.from_dict(d) for d in self.call("jobs")]

    def result(self, kind: str, job_id: str) -> Any:
        data = self.call("result", job_id)
        return None if data is None else result_from_dict(kind, data)

    def follow(
        self, job_id: str, offset: int = 0, on_event: Callable[[Event], None] | None = None
    ) -> tuple[int, str | None]:
        """Stream events from `offset`; return (next offset, terminal status or None)."""
        terminal = None
        for line in self.transport.stream(self.argv("follow", job_id, "--offset", str(offset))):
            line = line.strip()
            if not line:
                continue
            try:
                data = json.loads(line)
                event = Event.from_dict(data)
            except (json.JSONDecodeError, ProtocolError):
                if '"error"' in line:
                    data = json.loads(line)
                    raise DeviceError(
                        f"{self.device.name}: {data.get('error')}", data.get("hint")
                    ) from None
                continue
            offset = event.seq + 1
            if event.kind == "status" and event.status in TERMINAL:
                terminal = event.status
            if on_event:
                on_event(event)
        return offset, terminal
