"""The tools under test, run as their users would: OpenSSH scp/ssh, rsync over ssh, Ansible
(ad hoc), parallel-ssh, and the `edge` CLI. Each call returns wall-clock seconds from
launch to the last process done, or raises ToolFailed."""

from __future__ import annotations

import importlib.util
import json
import os
import resource
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .lab import Device, Lab
from .payloads import Payload
from .procs import children, kill_marked, pids_with_cmdline, terminate

TOOL_MARK = "EDGE_NETLAB_TOOL"


class ToolFailed(RuntimeError):
    """A tool exited non-zero, timed out, or reported a failed device."""


def children_cpu() -> float:
    """User+sys CPU seconds of this process's reaped children (and theirs, once reaped)."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _bin(name: str) -> str | None:
    """`name` next to this Python (the venv), else on PATH."""
    local = Path(sys.executable).parent / name
    return str(local) if os.access(local, os.X_OK) else shutil.which(name)


def _why(out: str, err: str) -> str:
    """The telling lines of a failed run: Ansible's UNREACHABLE/FAILED ones, else the tail."""
    lines = (err + "\n" + out).splitlines()
    words = ("UNREACHABLE", "FAILED", '"msg"', '"error": "')  # Ansible's; edge's JSON
    hits = [ln.strip() for ln in lines if any(w in ln for w in words)]
    return " | ".join(hits[:3] or [ln.strip() for ln in lines if ln.strip()][-3:])[:300]


def device_env() -> dict[str, str]:
    """The environment sshd gives a session: what a device-side process runs with when the
    harness starts it directly (no PYTHON* variables of the client's)."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": os.environ.get("HOME", "/root"),
        "LANG": "C.UTF-8",
        "USER": "root",
        "SHELL": "/bin/sh",
    }


class Tools:
    """Runs each tool against the lab; `missing` says which are not installed and why."""

    def __init__(self, lab: Lab, work: Path, python: str, timeout: float) -> None:
        self.lab, self.work, self.python, self.timeout = lab, work, python, timeout
        self.edge = _bin("edge")
        self.ansible = _bin("ansible")
        self.ansible_mark = uuid.uuid4().hex  # ansible and the ssh masters it leaves
        self.missing: dict[str, str] = {}
        # client CPU of every tool run so far (RUSAGE_CHILDREN deltas); `cpu_clean` turns
        # False if some other child of ours (sshd, the delay proxy) was reaped meanwhile
        self.cpu_s = 0.0
        self.cpu_clean = True
        for tool in ("scp", "ssh"):
            if not shutil.which(tool):
                self.missing[tool] = f"OpenSSH client `{tool}` not found"
        if not shutil.which("rsync"):
            self.missing["rsync"] = "rsync not installed (apt-get install -y rsync)"
        if not self.ansible:
            self.missing["ansible"] = "ansible-core not installed (pip install ansible-core)"
        if importlib.util.find_spec("pssh") is None:
            self.missing["pssh"] = (
                "parallel-ssh not installed for this Python (pip install parallel-ssh)"
            )
        if not self.edge:
            self.missing["edge"] = "the edge CLI is not installed (pip install -e .)"

    def has(self, tool: str) -> bool:
        return tool not in self.missing

    # ------------------------------------------------------------------ process running

    def run(
        self,
        argvs: Sequence[Sequence[str]],
        env: dict[str, str] | None = None,
        timeout: float | None = None,
        mark: str | None = None,
    ) -> tuple[float, list[str]]:
        """Start every argv at once, wait for all; (seconds, stdouts). Kills the lot (and
        whatever they spawned) on timeout or Ctrl-C. Adds their CPU to `cpu_s`."""
        mark = mark or uuid.uuid4().hex
        env = {**(env or os.environ), TOOL_MARK: mark}
        timeout = timeout or self.timeout
        procs: list[subprocess.Popen] = []
        before = set(children(os.getpid()))  # sshd, the delay proxy: alive or zombie, unreaped
        cpu0 = children_cpu()
        t0 = time.monotonic()
        try:
            for argv in argvs:
                procs.append(
                    subprocess.Popen(
                        list(argv),
                        env=env,
                        stdin=subprocess.DEVNULL,
                        stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE,
                        text=True,
                    )
                )
            outs = []
            for argv, proc in zip(argvs, procs):
                left = max(0.1, t0 + timeout - time.monotonic())
                try:
                    out, err = proc.communicate(timeout=left)
                except subprocess.TimeoutExpired:
                    raise ToolFailed(f"timed out after {timeout:.0f}s") from None
                if proc.returncode != 0:
                    raise ToolFailed(
                        f"{Path(argv[0]).name} exit {proc.returncode}: " + _why(out, err)
                    )
                outs.append(out)
            seconds = time.monotonic() - t0
            self.cpu_s += children_cpu() - cpu0
            if before - set(children(os.getpid())):  # reaped: its CPU is in the delta too
                self.cpu_clean = False
            return seconds, outs
        except BaseException:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
            kill_marked(mark, TOOL_MARK)
            for proc in procs:
                proc.wait()
            raise

    # ------------------------------------------------------------------ OpenSSH, rsync

    def scp(self, devs: Sequence[Device], payload: Payload, config: Path | None = None) -> float:
        """One `scp` per device, all at once."""
        cfg = str(config or self.lab.ssh_config)
        rec = ["-r"] if payload.recursive else []
        src = str(payload.copy_src)
        return self.run([["scp", "-F", cfg, "-q", *rec, src, f"{d.name}:{d.dest}/"] for d in devs])[
            0
        ]

    def rsync(self, devs: Sequence[Device], payload: Payload, config: Path | None = None) -> float:
        """One `rsync -a -e 'ssh -F cfg'` per device, all at once."""
        cfg = str(config or self.lab.ssh_config)
        return self.run(
            [
                ["rsync", "-a", "-e", f"ssh -F {cfg}", str(payload.copy_src), f"{d.name}:{d.dest}/"]
                for d in devs
            ]
        )[0]

    def ssh(self, devs: Sequence[Device], command: str, *opts: str) -> float:
        """One `ssh DEVICE COMMAND` per device, all at once (no connection sharing)."""
        return self.run(
            [["ssh", "-F", str(self.lab.ssh_config), *opts, d.name, command] for d in devs]
        )[0]

    # ------------------------------------------------------------------ parallel-ssh

    def _pssh(self, devs: Sequence[Device], mode: str, arg: str) -> float:
        argv = [
            sys.executable,
            str(Path(__file__).with_name("pssh_run.py")),
            "--key",
            str(self.lab.client_key),
        ]
        for d in devs:
            argv += ["--host", f"{d.addr}:{d.dest}"]
        return self.run([[*argv, mode, arg]])[0]

    def pssh_copy(self, devs: Sequence[Device], payload: Payload) -> float:
        """ParallelSSHClient.copy_file (SFTP) to every device."""
        return self._pssh(devs, "copy", str(payload.copy_src))

    def pssh_run(self, devs: Sequence[Device], command: str) -> float:
        return self._pssh(devs, "run", command)

    def paramiko_put(self, devs: Sequence[Device], payload: Payload) -> float:
        """paramiko's own SFTPClient.put, a thread per device, in one process."""
        argv = [
            sys.executable,
            str(Path(__file__).with_name("paramiko_put.py")),
            "--key",
            str(self.lab.client_key),
            "--known-hosts",
            str(self.lab.known_hosts),
        ]
        for d in devs:
            argv += ["--host", f"{d.addr}:{d.dest}"]
        return self.run([[*argv, str(payload.copy_src)]])[0]

    # ------------------------------------------------------------------ Ansible

    def ansible_setup(self, groups: Mapping[str, Sequence[Device]]) -> None:
        """Inventory (a group per device count, dest_dir per host) and ansible.cfg:
        OpenSSH with its default ControlPersist, pipelining on, forks set per run."""
        d = self.work / "ansible"
        d.mkdir(parents=True, exist_ok=True)
        lines = ["[lab]"] + [f"{dev.name} dest_dir={dev.dest}" for dev in self.lab.devices]
        for name, devs in groups.items():
            lines += [f"[{name}]"] + [dev.name for dev in devs]
        lines += ["[all:vars]", f"ansible_python_interpreter={self.python}"]
        (d / "hosts.ini").write_text("\n".join(lines) + "\n")
        (d / "ansible.cfg").write_text(
            f"[defaults]\ninventory = {d / 'hosts.ini'}\nhost_key_checking = True\n"
            f"retry_files_enabled = False\nremote_tmp = {self.lab.base / 'ansible-remote'}\n"
            f"local_tmp = {d / 'tmp'}\ndeprecation_warnings = False\n"
            f"[ssh_connection]\nssh_common_args = -F {self.lab.ssh_config}\n"
            f"control_path_dir = {self.lab.base / 'cp'}\npipelining = True\n"
        )
        self.ansible_env = {
            **os.environ,
            "ANSIBLE_CONFIG": str(d / "ansible.cfg"),
            "ANSIBLE_HOME": str(d / "home"),
            "ANSIBLE_NOCOLOR": "1",
            "LC_ALL": "C.UTF-8",
            "LANG": "C.UTF-8",
        }

    def ansible_cold(self) -> None:
        """Drop the ssh masters (ControlPersist) Ansible left: the next run connects anew."""
        kill_marked(self.ansible_mark, TOOL_MARK)
        terminate(pids_with_cmdline(str(self.lab.base / "cp")))  # the masters' titles
        shutil.rmtree(self.lab.base / "cp", ignore_errors=True)

    def ansible_run(self, group: str, forks: int, module: str, args: str = "") -> float:
        argv = [self.ansible or "ansible", group, "-f", str(forks), "-m", module]
        if args:
            argv += ["-a", args]
        return self.run([argv], env=self.ansible_env, mark=self.ansible_mark)[0]

    def ansible_copy(self, group: str, forks: int, payload: Payload) -> float:
        return self.ansible_run(
            group, forks, "copy", f"src={payload.copy_src} dest={{{{ dest_dir }}}}/"
        )

    # ------------------------------------------------------------------ warm-up

    def warm_up(self, dev: Device) -> None:
        """One untimed tiny run of each Python tool, so every timed run finds its bytecode
        cache filled (as after a normal install), and edge's agent on every device; then
        the device is emptied again."""
        tiny = self.work / "warm-up"
        tiny.mkdir(exist_ok=True)
        (tiny / "saved_model.pb").write_bytes(b"stub")
        payload = Payload("warm-up", tiny, tiny / "saved_model.pb")
        steps = [
            ("edge", lambda: self.edge_cmd(["push", str(tiny), "--to", dev.name, "--json"])),
            ("edge", lambda: self.edge_cmd(["fleet", "probe", dev.name, "--json"])),
            ("ansible", lambda: self.ansible_run(dev.name, 1, "ping")),
            ("ansible", lambda: self.ansible_copy(dev.name, 1, payload)),
            ("pssh", lambda: self.pssh_copy([dev], payload)),
        ]
        for tool, step in steps:
            if self.has(tool):
                try:
                    step()
                except ToolFailed as exc:
                    print(f"[setup] warm-up of {tool} failed: {exc}", file=sys.stderr)
        if self.has("edge"):
            # Every device gets the agent once, untimed, as scp and rsync are on each device
            # before their runs; lab.reset keeps it.
            try:
                self.edge_cmd(["fleet", "probe", "--to", "all", "--quick", "--json"])
            except ToolFailed as exc:
                print(f"[setup] agent install on every device failed: {exc}", file=sys.stderr)
        self.ansible_cold()
        self.lab.reset([dev])

    # ------------------------------------------------------------------ edge

    def edge_setup(self, groups: Mapping[str, Sequence[Device]]) -> None:
        """A fleet inventory written with `edge fleet add` (tag per group), EDGE_HOME."""
        self.edge_env = {
            **os.environ,
            "EDGE_HOME": str(self.work / "edge-home"),
            "EDGE_FLEET": str(self.work / "fleet.yaml"),
            "EDGE_SSH_CONFIG": str(self.lab.ssh_config),
            "EDGE_KNOWN_HOSTS": str(self.lab.known_hosts),
            "TF_CPP_MIN_LOG_LEVEL": "2",
        }
        for dev in self.lab.devices:
            tags = ",".join(g for g, devs in groups.items() if dev in devs)
            self.run(
                [
                    [
                        self.edge or "edge",
                        "fleet",
                        "add",
                        dev.name,
                        "--host",
                        dev.name,
                        "--python",
                        self.python,
                        "--root",
                        str(dev.edge_root),
                        "--tag",
                        tags,
                        "--replace",
                    ]
                ],
                env=self.edge_env,
            )

    def edge_cmd(self, args: Sequence[str], config: Path | None = None) -> tuple[float, Any]:
        """Run `edge ARGS` (JSON output); fail if any device's status is not succeeded."""
        env = dict(self.edge_env)
        if config is not None:
            env["EDGE_SSH_CONFIG"] = str(config)
        seconds, (out,) = self.run([[self.edge or "edge", *args]], env=env)
        data = json.loads(out) if out.strip() else None
        if isinstance(data, list):
            bad = [
                r
                for r in data
                if isinstance(r, dict) and r.get("status", "succeeded") != "succeeded"
            ]
            if bad:
                raise ToolFailed(f"{bad[0].get('device')}: {bad[0].get('error')}")
        return seconds, data

    def edge_push(
        self, group: str, n: int, payload: Payload, config: Path | None = None
    ) -> tuple[float, Any]:
        return self.edge_cmd(
            ["push", str(payload.dir), "--to", f"tag:{group}", "--parallel", str(n), "--json"],
            config,
        )
