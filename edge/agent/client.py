"""AgentClient: the host's side of the agent protocol, over any Transport."""

from __future__ import annotations

import base64
import hashlib
import json
import posixpath
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from device_agent.protocol_core import SERVED, TERMINAL, DeviceFacts
from edge.agent import replies
from edge.agent.package import agent_filename, build_zipapp
from edge.core.errors import DeviceError
from edge.fleet.devices import Device
from edge.transport import CommandResult, Transport, TransportError
from edge.transport.base import Stream
from edge.transport.tail import TailWriter

if TYPE_CHECKING:  # the job types load with the job commands (protocol: ~20 ms of a start)
    from device_agent.protocol import ConvertSpec, DevicePlan, Event, JobSpec, JobState

EXIT_AGENT_ERROR = 3  # device_agent.__main__.EXIT_AGENT_ERROR
# Commands that need only the stdlib run with `-S`: no site-packages, so neither the time
# the device's .pth files take at every start nor a broken one touches a push.
STDLIB_COMMANDS = ("push-plan", "push-receive", "push-commit")

T = TypeVar("T")

# The agent's `follow` sends a heartbeat every 5 s; this much silence means a dead link.
FOLLOW_IDLE_TIMEOUT = 30.0

# Runs on any Python 3 the device has, so a too-old one is reported, not crashed on. With
# the agent's bytes on stdin, it also installs them (atomically) when the Python fits.
PROBE = (
    "import sys\n"  # -c puts the cwd (the login's home) first on sys.path: not for us
    "if sys.path and sys.path[0] in ('', '.'):\n    del sys.path[0]\n"
    "import os, json, hashlib\n"
    "try:\n    from importlib.metadata import version\n    np = version('numpy')\n"
    "except Exception:\n    np = None\n"
    "p = sys.argv[1]\n"
    "data = sys.stdin.buffer.read() if len(sys.argv) > 2 else b''\n"
    "if data and sys.version_info >= (3, 8):\n"
    "    d = os.path.dirname(p)\n"
    "    os.umask(os.umask(0o022) | 0o022)\n"  # the agent refuses a root others can write
    "    if d:\n        os.makedirs(d, exist_ok=True)\n"  # two first uses may race
    "    tmp = '%s.tmp%d' % (p, os.getpid())\n"
    "    with open(tmp, 'wb') as f:\n        f.write(data)\n"
    "    os.replace(tmp, p)\n"
    "h = hashlib.sha256(open(p, 'rb').read()).hexdigest() if os.path.isfile(p) else None\n"
    "print(json.dumps({'python': '%d.%d.%d' % tuple(sys.version_info[:3]), 'numpy': np,"
    " 'agent': h}))\n"
)


def remote_root(root: str) -> str:
    """`~/x` -> `x`: exec and SFTP both start in the login's home directory, and neither
    expands `~` in a quoted argument."""
    if root == "~":
        return "."
    return root[2:] if root.startswith("~/") else root


@dataclass
class AgentCheck:
    """What `ensure_agent` found on the device."""

    python: str
    numpy: str | None
    installed: bool


class AgentClient:
    """Runs agent commands on one device and decodes their JSON."""

    def __init__(self, device: Device, transport: Transport) -> None:
        self.device = device
        self.transport = transport
        self.root = remote_root(device.root)
        self.agent_path = posixpath.join(self.root, "agent", agent_filename())
        self.check: AgentCheck | None = None  # set once ensure_agent ran on this client
        self._requests = 0
        self._agent_sha: str | None = None

    def argv(self, *args: str) -> list[str]:
        """The agent command line on the device: `-I` keeps the login's cwd (its home) and
        PYTHONPATH off sys.path, so only the installed zipapp runs."""
        flags = ["-I", "-S"] if args and args[0] in STDLIB_COMMANDS else ["-I"]
        return [self.device.python, *flags, self.agent_path, "--root", self.root, *args]

    def path(self, *parts: str) -> str:
        """A path under the device root, as the device's SFTP/exec see it."""
        return posixpath.join(self.root, *parts)

    def ensure_agent(self, need_numpy: bool = False, install: bool = False) -> AgentCheck:
        """Check the device's Python and install this build's zipapp if it lacks it.

        `install`: the agent is known to be missing, so its bytes go along with the check
        (one exec instead of a check and an upload)."""
        local = build_zipapp()
        blob = local.read_bytes()
        data = blob if install else None
        check = self._probe(data)
        if need_numpy and not check.numpy:
            raise DeviceError(
                f"{self.device.name}: numpy is not installed for {self.device.python}.",
                "Install it on the board: sudo apt-get install python3-numpy "
                "(or pip3 install numpy).",
            )
        if self._agent_sha != hashlib.sha256(blob).hexdigest():  # missing, or damaged
            self.transport.put(local, self.agent_path)
            check.installed = True
        elif data is not None:
            check.installed = True
        self.check = check
        return check

    def _probe(self, data: bytes | None) -> AgentCheck:
        argv = [self.device.python, "-c", PROBE, self.agent_path, *(["install"] if data else [])]
        probe = self.transport.run(argv, input=data, timeout=60)
        if probe.exit_code != 0 or not probe.stdout.strip():
            raise DeviceError(
                f"{self.device.name}: cannot run {self.device.python!r} "
                f"(exit {probe.exit_code}): {probe.tail(3)}",
                f"Point the device at a Python 3.8+ with numpy: edge fleet add "
                f"{self.device.name} --python /usr/bin/python3 --replace",
            )
        python, numpy, agent_sha = replies.probe(
            self.device.name,
            replies.parse(self.device.name, "probe", probe.stdout.strip().splitlines()[-1]),
        )
        check = AgentCheck(python=python, numpy=numpy, installed=False)
        if tuple(int(p) for p in check.python.split(".")[:2]) < (3, 8):
            raise DeviceError(
                f"{self.device.name}: Python {check.python} is too old; the agent needs 3.8+ "
                "(JetPack 4.6, the last for Jetson Nano, TX1 and TX2, has Python 3.6).",
                f"Install python3.8 or newer on the board and point the device at it: "
                f"edge fleet add {self.device.name} --python /usr/bin/python3.8 --replace; "
                "on JetPack 4.6 that Python has no TensorRT bindings, so only the native "
                "backend can run there.",
            )
        self._agent_sha = agent_sha
        return check

    def call(self, *args: str, input: bytes | None = None, timeout: float | None = 120) -> Any:
        """Run an agent command and return its decoded JSON output.

        The agent's file name carries its build, so the first command simply runs it; only
        when that fails the way a missing agent or an unfit Python does is the device
        checked (and the agent installed), which saves a round trip on every command."""
        argv = self.argv(*args)
        command = args[0] if args else ""
        served = self._served(argv, args, input, timeout)
        if served is not None:
            return self._decode(served, command)
        result = self.transport.run(argv, input=input, timeout=timeout)
        if self.check is None and result.exit_code not in (0, EXIT_AGENT_ERROR):
            # "can't open file": no agent yet, so send it along with the check; otherwise
            # the check says what is wrong (no Python, too old) or repairs a damaged agent
            missing = result.exit_code == 2 and "can't open file" in result.stderr
            self.ensure_agent(install=missing)
            if self.check is not None and self.check.installed:
                result = self.transport.run(argv, input=input, timeout=timeout)
        return self._decode(result, command)

    def start_call(
        self,
        *args: str,
        input: bytes,
        timeout: float = 120,
        beside: Callable[[], object] | None = None,
        tail: bytes = b"",
    ) -> tuple[Any, Stream, float]:
        """Start an agent command that keeps running after its first reply line: send
        `input`, then return that line (decoded JSON), the open stream, which the caller
        writes on and finishes, and the seconds from opening the stream to that line. A
        missing agent is installed first, as `call` does; an error reply, or none, raises
        after the command ended. `beside` runs once the input is sent, before the wait
        (again after an install: what it opened before would have found no agent). `tail`
        follows `input` from a thread of its own while the reply is awaited (TailWriter)."""
        command = args[0] if args else ""
        for attempt in (1, 2):
            opened = time.monotonic()
            stream = self.transport.open_stream(self.argv(*args))
            try:
                try:
                    stream.write(input)
                except BrokenPipeError:  # the command ended early: its output says why
                    pass
                if tail:
                    stream = TailWriter(stream, tail)
                if beside is not None:
                    beside()
                line = stream.read_line(replies.MAX_REPLY_CHARS, timeout)
                if line.endswith(b"\n"):
                    data = replies.parse(self.device.name, command, line.decode(errors="replace"))
                    if not (isinstance(data, dict) and "error" in data):
                        return data, stream, time.monotonic() - opened
            except BaseException:
                stream.abort()
                raise
            result = stream.finish(timeout)
            result.stdout = line.decode(errors="replace") + result.stdout  # an error reply
            failed = result.exit_code not in (0, EXIT_AGENT_ERROR)
            if attempt == 1 and self.check is None and failed:
                missing = result.exit_code == 2 and "can't open file" in result.stderr
                self.ensure_agent(install=missing)
                if self.check is not None and self.check.installed:
                    continue
            self._decode(result, command)  # raises the agent's error, or says it failed
            break
        raise replies.malformed(self.device.name, command, "no reply line before the data")

    def call_as(
        self, cls: type[T], *args: str, input: bytes | None = None, timeout: float | None = 120
    ) -> T:
        """`call`, with the reply decoded (and checked) as protocol dataclass `cls`; a
        reply outside the protocol is this device's DeviceError."""
        data = self.call(*args, input=input, timeout=timeout)
        return replies.decode(self.device.name, args[0], cls, data)  # type: ignore[no-any-return,unused-ignore]

    def _served(
        self, argv: list[str], args: tuple[str, ...], input: bytes | None, timeout: float | None
    ) -> CommandResult | None:
        """Through the multiplexer's resident agent (`serve`), when there is one: no
        Python start on the device. None: run the command the usual way instead (also
        when the resident agent cannot start, e.g. because it is not installed yet)."""
        serve_request = getattr(self.transport, "serve_request", None)
        if serve_request is None or not args or args[0] not in SERVED:
            return None
        self._requests += 1
        line = json.dumps(
            {
                "id": self._requests,
                "argv": list(args),
                "stdin": base64.b64encode(input).decode() if input else None,
            }
        )
        try:
            reply = json.loads(serve_request(self.argv("serve"), line, timeout))
        except (TransportError, ValueError, RecursionError):
            return None
        code, stdout, stderr = replies.served(self.device.name, args[0], reply)
        return CommandResult(argv, code, stdout, stderr)

    @property
    def agent_installed(self) -> bool:
        """Whether this client installed the agent (in `ensure_agent` or on first use)."""
        return bool(self.check and self.check.installed)

    def decode_result(self, result: CommandResult, command: str) -> Any:
        """The JSON reply of an agent command run directly (a stream's), or its error."""
        return self._decode(result, command)

    def _decode(self, result: CommandResult, command: str) -> Any:
        last = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
        if result.exit_code == EXIT_AGENT_ERROR and last:
            raise replies.error_object(
                self.device.name, command, replies.parse(self.device.name, command, last)
            )
        if result.exit_code != 0 or not last:
            raise DeviceError(
                f"{self.device.name}: agent command {command} failed "
                f"(exit {result.exit_code}): {result.tail()}",
                "Run `edge info --to " + self.device.name + "` to check the agent and its Python.",
            )
        return replies.parse(self.device.name, command, last)

    def info(self, deep: bool = False) -> DeviceFacts:
        return self.call_as(
            DeviceFacts, "info", *(["--deep"] if deep else []), timeout=300 if deep else 60
        )

    def plan(self, spec: ConvertSpec) -> DevicePlan:
        """The device's own decisions for convert job `spec` (nothing runs): backend and
        why, options, memory plan, cache key and hit, calibration check. It imports
        TensorFlow on the device, hence the long timeout."""
        from device_agent.protocol import DevicePlan

        return self.call_as(DevicePlan, "plan", input=spec.to_json().encode(), timeout=300)

    def submit(self, spec: JobSpec) -> str:
        data = self.call("submit", "-", "--detach", input=spec.to_json().encode())
        return replies.job_id(self.device.name, data)

    def status(self, job_id: str) -> JobState:
        from device_agent.protocol import JobState

        return self.call_as(JobState, "status", job_id)

    def cancel(self, job_id: str) -> JobState:
        from device_agent.protocol import JobState

        return self.call_as(JobState, "cancel", job_id)

    def jobs(self) -> list[JobState]:
        from device_agent.protocol import JobState

        return replies.decode_list(self.device.name, "jobs", JobState, self.call("jobs"))

    def cache_hit(self, key: str) -> bool:
        """Whether the device's converted-model cache holds `key`."""
        return replies.flag(self.device.name, "cache", self.call("cache", key), "hit")

    def result(self, kind: str, job_id: str) -> Any:
        """The job's result (a ConvertResult, BenchResult or ValidateResult), or None."""
        from device_agent.protocol import RESULT_TYPES

        data = self.call("result", job_id)
        if data is None:
            return None
        if kind not in RESULT_TYPES:
            raise ValueError(f"unknown job kind {kind!r}")  # the host's own bug
        return replies.decode(self.device.name, "result", RESULT_TYPES[kind], data)

    def follow(
        self, job_id: str, offset: int = 0, on_event: Callable[[Event], None] | None = None
    ) -> tuple[int, str | None]:
        """Stream events from `offset`; return (next offset, terminal status or None)."""
        from device_agent.protocol import Event

        terminal = None
        name = self.device.name
        argv = self.argv("follow", job_id, "--offset", str(offset))
        for line in self.transport.stream(argv, idle_timeout=FOLLOW_IDLE_TIMEOUT):
            line = line.strip()
            if not line:  # a heartbeat
                continue
            data = replies.parse(name, "follow", line)
            if isinstance(data, dict) and "error" in data and "seq" not in data:
                raise replies.error_object(name, "follow", data)
            event: Event = replies.decode(name, "follow", Event, data)
            if event.seq < offset:  # events come in order, from the offset asked for
                raise replies.malformed(
                    name, "follow", f"event seq {event.seq} goes back (expected {offset} or more)"
                )
            offset = event.seq + 1
            if event.kind == "status" and event.status in TERMINAL:
                terminal = event.status
            if on_event:
                on_event(event)
        return offset, terminal
