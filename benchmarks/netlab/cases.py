"""The five benchmark cases of the issue; each appends Rows to `ctx.rows`."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .lab import Device, Lab
from .measuring import BUSY_WARN, Ctx, interleave, measure  # noqa: F401
from .payloads import Payload
from .report import Row
from .tools import ToolFailed, Tools, device_env

SINK = """\
import socket, sys
srv = socket.create_server((sys.argv[1], int(sys.argv[2])))
print("ready", flush=True)
conn, _ = srv.accept()
n = 0
while True:
    data = conn.recv(1 << 20)
    if not data:
        break
    n += len(data)
conn.sendall(str(n).encode())
"""


def _edge_note(row: Row, data: object) -> None:
    """Add the slowest device's own push time (edge's JSON) to the row's note."""
    if isinstance(data, list):
        secs = [r.get("seconds") or 0.0 for r in data if isinstance(r, dict)]
        if secs:
            row.note = "; ".join(
                filter(None, [f"slowest device's push {max(secs):.1f}s", row.note])
            )


def _edge_trial(
    ctx: Ctx,
    row_args: dict,
    group: str,
    devs: Sequence[Device],
    p: Payload,
    config: Path | None = None,
    setup: Callable[[], object] | None = None,
) -> tuple[dict[str, Any], Callable[[Row], None]]:
    """Trial arguments for `edge push` to `devs`, and what adds the slowest device's own
    push time to its row once done."""
    last: list[object] = []

    def fn() -> float:
        seconds, data = ctx.tools.edge_push(f"n{len(devs)}", len(devs), p, config)
        last[:] = [data]
        return seconds

    def noted(row: Row) -> None:
        if row.seconds is not None and last:
            _edge_note(row, last[0])

    trial = dict(
        tool=f"edge push (--parallel {len(devs)})",
        needs="edge",
        fn=fn,
        setup=setup,
        role="edge",
        group=group,
        **row_args,
    )
    return trial, noted


def _edge_push(ctx: Ctx, *args: Any, **kwargs: Any) -> Row:
    """Measure `edge push` alone (_edge_trial's arguments)."""
    trial, noted = _edge_trial(ctx, *args, **kwargs)
    row = measure(ctx, **trial)
    noted(row)
    return row


def _against_edge(
    ctx: Ctx, baseline: dict[str, Any], edge: tuple[dict[str, Any], Callable[[Row], None]]
) -> None:
    """The baseline the targets name and edge, interleaved over max(3, --repeat) rounds."""
    trial, noted = edge
    _, row = interleave(ctx, [baseline, trial], max(3, ctx.repeat))
    noted(row)


def raw_tcp(lab: Lab, dev: Device, path: Path) -> float:
    """Seconds to send `path` over plain TCP into the device's namespace (no ssh)."""
    sink = subprocess.Popen(
        ["ip", "netns", "exec", dev.ns, sys.executable, "-c", SINK, dev.addr, "9009"],
        stdout=subprocess.PIPE,
        text=True,
        env=lab.env(),
    )
    try:
        assert sink.stdout is not None
        sink.stdout.readline()
        t0 = time.monotonic()
        with socket.create_connection((dev.addr, 9009), timeout=60) as s, open(path, "rb") as f:
            s.sendfile(f)
            s.shutdown(socket.SHUT_WR)
            got = int(s.recv(64) or b"0")
        seconds = time.monotonic() - t0
        if got != path.stat().st_size:
            raise ToolFailed(f"sink got {got} bytes")
        return seconds
    finally:
        sink.kill()
        sink.wait()


def case1(ctx: Ctx) -> None:
    """1 device on a 100 Mbit/s link: line time, raw TCP, scp, rsync, edge push."""
    ctx.lab.shape(ctx.rate_mbit, ctx.devs(1))
    for p in ctx.payloads():
        _case1(ctx, p, p is ctx.random)


def _case1(ctx: Ctx, p: Payload, first: bool) -> None:
    lab, tools, devs = ctx.lab, ctx.tools, ctx.devs(1)
    group = f"{p.name}, 1 device, {ctx.rate_mbit:g} Mbit/s"
    line = ctx.line_time(p.bytes)
    kw: dict[str, Any] = dict(case=1, nbytes=p.bytes, devices=1, timeout=60 + 20 * line)
    ctx.rows.append(
        Row(
            1,
            group,
            "line time (bytes*8/rate)",
            line,
            "ref",
            p.bytes,
            key="c1.line" if first else "",
        )
    )
    reset = lambda: lab.reset(devs)  # noqa: E731
    if first:
        measure(
            ctx,
            group=group,
            tool="raw TCP, no ssh (link ceiling)",
            needs="",
            fn=lambda: raw_tcp(lab, devs[0], p.copy_src),
            role="ref",
            key="c1.tcp",
            **kw,
        )
    measure(
        ctx,
        group=group,
        tool="rsync over ssh",
        needs="rsync",
        setup=reset,
        fn=lambda: tools.rsync(devs, p),
        **kw,
    )
    scp = dict(
        group=group,
        tool="scp",
        needs="scp",
        setup=reset,
        fn=lambda: tools.scp(devs, p),
        key="c1.scp" if first else "c1.model_scp",
        **kw,
    )
    key = "c1.edge" if first else "c1.model_edge"
    _against_edge(ctx, scp, _edge_trial(ctx, {**kw, "key": key}, group, devs, p, setup=reset))


def case2(ctx: Ctx) -> None:
    """1 device, 50 ms RTT (delay proxy), no rate cap: scp and rsync vs edge push."""
    lab, tools, devs, p = ctx.lab, ctx.tools, ctx.devs(1), ctx.random
    lab.shape(None, devs)
    config = lab.delay(ctx.delay_ms, devs)
    try:
        group = f"{p.name}, 1 device, {2 * ctx.delay_ms:g} ms RTT, no rate cap"
        kw: dict[str, Any] = dict(case=2, nbytes=p.bytes, devices=1, timeout=300.0)
        reset = lambda: lab.reset(devs)  # noqa: E731
        measure(
            ctx,
            group=group,
            tool="rsync over ssh",
            needs="rsync",
            setup=reset,
            fn=lambda: tools.rsync(devs, p, config),
            **kw,
        )
        scp = dict(
            group=group,
            tool="scp",
            needs="scp",
            setup=reset,
            fn=lambda: tools.scp(devs, p, config),
            key="c2.scp",
            **kw,
        )
        edge = _edge_trial(ctx, {**kw, "key": "c2.edge"}, group, devs, p, config, reset)
        _against_edge(ctx, scp, edge)
    finally:
        lab.stop_delay()


def case3(ctx: Ctx) -> None:
    """N devices, each on its own 100 Mbit/s link: fan-out of every tool vs edge."""
    ctx.lab.shape(ctx.rate_mbit, ctx.devs(ctx.devices))
    if ctx.model and ctx.model_fanout:
        _case3(ctx, ctx.model, False)
    _case3(ctx, ctx.random, True)  # last: case 4 starts from what edge pushed here


def _case3(ctx: Ctx, p: Payload, first: bool) -> None:
    lab, tools, n = ctx.lab, ctx.tools, ctx.devices
    devs = ctx.devs(n)
    group = f"{p.name}, {n} devices, {ctx.rate_mbit:g} Mbit/s each"
    line = ctx.line_time(p.bytes)
    kw: dict[str, Any] = dict(case=3, nbytes=p.bytes, devices=n, timeout=120 + 30 * line)
    k = (lambda s: f"c3.{s}") if first else (lambda s: "")
    ctx.rows.append(Row(3, group, "line time of one link", line, "ref", p.bytes, n, key=k("line")))
    reset = lambda: lab.reset(devs)  # noqa: E731

    def ansible_fresh() -> None:
        reset()
        tools.ansible_cold()

    measure(
        ctx,
        group=group,
        tool=f"ansible copy (forks {n})",
        needs="ansible",
        setup=ansible_fresh,
        fn=lambda: tools.ansible_copy(f"n{n}", n, p),
        key=k("ansible"),
        **kw,
    )
    tools.ansible_cold()
    if first:
        measure(
            ctx,
            group=group,
            tool=f"paramiko put ({n} threads, one process)",
            needs="",
            setup=reset,
            fn=lambda: tools.paramiko_put(devs, p),
            key=k("paramiko"),
            **kw,
        )
    measure(
        ctx,
        group=group,
        tool="parallel-ssh copy_file",
        needs="pssh",
        setup=reset,
        fn=lambda: tools.pssh_copy(devs, p),
        **kw,
    )
    measure(
        ctx,
        group=group,
        tool=f"{n} parallel rsync",
        needs="rsync",
        setup=reset,
        fn=lambda: tools.rsync(devs, p),
        **kw,
    )
    scp = dict(
        group=group,
        tool=f"{n} parallel scp",
        needs="scp",
        setup=reset,
        fn=lambda: tools.scp(devs, p),
        key=k("scp"),
        **kw,
    )
    _against_edge(ctx, scp, _edge_trial(ctx, {**kw, "key": k("edge")}, group, devs, p, setup=reset))


def case4(ctx: Ctx) -> None:
    """N devices already holding the payload: re-push it unchanged."""
    lab, tools, n, p = ctx.lab, ctx.tools, ctx.devices, ctx.random
    devs = ctx.devs(n)
    group = f"{p.name} unchanged re-push, {n} devices, {ctx.rate_mbit:g} Mbit/s each"
    kw: dict[str, Any] = dict(case=4, devices=n, repeat=max(3, ctx.repeat), timeout=300.0)
    # Ansible re-push hashes everything: slow to repeat
    once: dict[str, Any] = {**kw, "repeat": ctx.repeat}
    # The baselines' copies are already there: placed locally (same bytes, mode, mtime).
    for dev in devs:
        shutil.rmtree(dev.dest, ignore_errors=True)
        dev.dest.mkdir(parents=True)
        shutil.copy2(p.copy_src, dev.dest / p.copy_src.name)
    lab.shape(ctx.rate_mbit, devs)
    tools.ansible_cold()
    measure(
        ctx,
        group=group,
        tool="ansible copy, cold ssh",
        needs="ansible",
        setup=tools.ansible_cold,
        fn=lambda: tools.ansible_copy(f"n{n}", n, p),
        key="c4.ansible",
        **once,
    )
    measure(
        ctx,
        group=group,
        tool="ansible copy, warm ControlPersist",
        needs="ansible",
        fn=lambda: tools.ansible_copy(f"n{n}", n, p),
        **once,
    )
    tools.ansible_cold()
    measure(
        ctx,
        group=group,
        tool=f"{n} parallel rsync",
        needs="rsync",
        fn=lambda: tools.rsync(devs, p),
        key="c4.rsync",
        **kw,
    )
    if tools.has("edge"):  # edge's first push (a no-op if case 3 left it there), uncapped
        lab.shape(None, devs)
        try:
            tools.edge_push(f"n{n}", n, p)
        finally:
            lab.shape(ctx.rate_mbit, devs)
    _edge_push(ctx, {**kw, "key": "c4.edge"}, group, devs, p)
    if tools.has("edge"):  # warm: edge's multiplexer (its ControlPersist), primed once
        with edge_mux(tools):
            tools.edge_push(f"n{n}", n, p)
            measure(
                ctx,
                group=group,
                tool=f"edge push (--parallel {n}), warm edge mux",
                needs="edge",
                fn=lambda: tools.edge_push(f"n{n}", n, p)[0],
                role="edge",
                key="c4.edge_warm",
                **kw,
            )


def _probe_set(ctx: Ctx, n: int, main: bool) -> None:
    """Cold and warm: n parallel ssh, parallel-ssh, ansible ping, edge fleet probe."""
    lab, tools, devs = ctx.lab, ctx.tools, ctx.devs(n)
    k = (lambda s: f"c5.{s}") if main else (lambda s: "")
    cmd = f"{ctx.tools.python} -c 'import sys; print(sys.version)'"
    cold = f"{n} devices run the device's Python, cold"
    warm = f"{n} devices run the device's Python, warm"
    # 3 runs each for the main probe (Ansible: --repeat, it is slow); --repeat for the other
    kw: dict[str, Any] = dict(
        case=5, devices=n, timeout=120.0, repeat=max(3, ctx.repeat) if main else ctx.repeat
    )
    ans: dict[str, Any] = {**kw, "repeat": ctx.repeat}
    measure(
        ctx,
        group=cold,
        tool=f"{n} parallel OpenSSH ssh",
        needs="ssh",
        fn=lambda: tools.ssh(devs, cmd),
        key=k("ssh"),
        **kw,
    )
    if main:
        measure(
            ctx,
            group=cold,
            tool=f"{n} parallel ssh, kex curve25519-sha256",
            needs="ssh",
            fn=lambda: tools.ssh(devs, cmd, "-o", "KexAlgorithms=curve25519-sha256"),
            **kw,
        )
        measure(
            ctx,
            group=cold,
            tool="parallel-ssh run_command",
            needs="pssh",
            fn=lambda: tools.pssh_run(devs, cmd),
            **kw,
        )
    measure(
        ctx,
        group=cold,
        tool=f"ansible -m ping (forks {n})",
        needs="ansible",
        setup=tools.ansible_cold,
        fn=lambda: tools.ansible_run(f"n{n}", n, "ping"),
        **ans,
    )
    measure(
        ctx,
        group=warm,
        tool="ansible -m ping, warm ControlPersist",
        needs="ansible",
        fn=lambda: tools.ansible_run(f"n{n}", n, "ping"),
        **ans,
    )
    tools.ansible_cold()
    probe = ["fleet", "probe", f"tag:n{n}", "--json"]
    measure(
        ctx,
        group=cold,
        tool="edge fleet probe (agent not installed)",
        needs="edge",
        setup=lambda: lab.reset(devs, keep_agent=False),
        fn=lambda: tools.edge_cmd(probe)[0],
        role="edge",
        **kw,
    )
    measure(
        ctx,
        group=cold,
        tool="edge fleet probe (agent installed)",
        needs="edge",
        fn=lambda: tools.edge_cmd(probe)[0],
        role="edge",
        key=k("edge_cold"),
        **kw,
    )
    # warm = persistent connections: edge's multiplexer, as Ansible's ControlPersist
    if tools.has("edge"):
        with edge_mux(tools):
            tools.edge_cmd(probe)  # the multiplexer connects to every device
            measure(
                ctx,
                group=warm,
                tool="edge fleet probe, warm edge mux",
                needs="edge",
                fn=lambda: tools.edge_cmd(probe)[0],
                role="edge",
                key=k("edge_warm"),
                **kw,
            )


@contextmanager
def edge_mux(tools: Tools) -> Iterator[None]:
    """`edge mux start` for the block, `edge mux stop` after it."""
    tools.run([[tools.edge or "edge", "mux", "start"]], env=tools.edge_env)
    try:
        yield
    finally:
        tools.run([[tools.edge or "edge", "mux", "stop"]], env=tools.edge_env)


def case5(ctx: Ctx) -> None:
    """Run the device's Python on N (and on probe_devices) devices; agent start-up."""
    lab, tools = ctx.lab, ctx.tools
    lab.shape(None)
    _probe_set(ctx, ctx.devices, main=True)
    if ctx.probe_devices != ctx.devices:
        _probe_set(ctx, ctx.probe_devices, main=False)
    dev = lab.devices[0]
    group = "agent and CLI start-up, no ssh"
    if not tools.has("edge"):
        return
    lab.reset([dev])
    try:
        tools.edge_cmd(["fleet", "probe", dev.name, "--json"])  # installs the agent
    except ToolFailed as exc:
        print(f"[case 5] agent install failed: {exc}", file=sys.stderr)
        return
    pyz = next(dev.edge_root.rglob("*.pyz"))
    argv = [tools.python, str(pyz), "--root", str(dev.edge_root), "info"]
    env = device_env()
    measure(
        ctx,
        5,
        group,
        "agent info, first run after install",
        "edge",
        role="edge",
        fn=lambda: tools.run([argv], env=env)[0],
        key="c5.agent_info",
        repeat=1,
    )
    measure(
        ctx,
        5,
        group,
        "agent info, later runs",
        "edge",
        role="edge",
        fn=lambda: tools.run([argv], env=env)[0],
        repeat=5,
    )
    measure(
        ctx,
        5,
        group,
        "edge CLI start-up (edge fleet ls --json)",
        "edge",
        role="edge",
        fn=lambda: tools.edge_cmd(["fleet", "ls", "--json"])[0],
        repeat=3,
    )


def case6(ctx: Ctx) -> None:
    """Scale: edge push vs parallel scp at two device counts, unshaped veths."""
    lab, p = ctx.lab, ctx.scale or ctx.random
    lab.shape(None)
    small, large = min(ctx.scale_devices), max(ctx.scale_devices)
    try:
        for n in sorted(set(ctx.scale_devices)):
            size = "small" if n == small else "large" if n == large else ""
            _scale_pair(ctx, p, ctx.devs(n), f"c6.{{}}.{size}" if size else "")
    finally:  # n x payload on the disk: leave nothing behind
        lab.reset(ctx.devs(large))


def _scale_pair(ctx: Ctx, p: Payload, devs: Sequence[Device], key: str) -> None:
    """n parallel scp, then edge push, to `devs`; `key` has a {} for the tool."""
    n = len(devs)
    group = f"{p.name}, {n} devices, no shaping (scale)"

    def reset() -> None:
        ctx.lab.reset(devs)

    measure(
        ctx,
        6,
        group,
        f"{n} parallel scp",
        "scp",
        fn=lambda: ctx.tools.scp(devs, p),
        setup=reset,
        nbytes=p.bytes,
        devices=n,
        key=key.format("scp"),
        timeout=600.0,
    )
    kw: dict[str, Any] = dict(
        case=6, nbytes=p.bytes, devices=n, timeout=600.0, key=key.format("edge")
    )
    _edge_push(ctx, kw, group, devs, p, setup=reset)


CASES: dict[int, Callable[[Ctx], None]] = {
    1: case1,
    2: case2,
    3: case3,
    4: case4,
    5: case5,
    6: case6,
}
