"""Push benchmark: `edge push` / `edge fleet probe` against scp, rsync, Ansible and
parallel-ssh, on sshd devices in network namespaces (tbf-shaped veths, delay proxy).

    sudo .venv/bin/python benchmarks/push_bench.py [--cases 1,2,3,4,5,6] [--devices 16] [--quick]

Needs root (network namespaces); without it, it says so and exits 0. See README.md.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from netlab.cases import BUSY_WARN, CASES, Ctx  # noqa: E402
from netlab.lab import Lab, require_root  # noqa: E402
from netlab.payloads import random_payload, savedmodel_payload  # noqa: E402
from netlab.report import check_targets, machine_info, table, targets_md, write_results  # noqa: E402,E501
from netlab.tools import Tools  # noqa: E402

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "RESULTS.md"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", default="1,2,3,4,5,6", help="comma-separated case numbers")
    p.add_argument("--devices", type=int, default=None, help="fan-out devices (16; quick: 4)")
    p.add_argument(
        "--probe-devices",
        type=int,
        default=None,
        help="devices of the larger probe in case 5 (32; quick: 8)",
    )
    p.add_argument("--mib", type=int, default=None, help="random payload MiB (128; quick: 32)")
    p.add_argument(
        "--scale-devices",
        type=int,
        default=None,
        help="case 6's larger fleet (64; quick: 8); its smaller one is --devices",
    )
    p.add_argument(
        "--scale-mib", type=int, default=None, help="case 6's random payload MiB (32; quick: 8)"
    )
    p.add_argument("--quick", action="store_true", help="32 MiB, 4 devices (8 for the probe)")
    p.add_argument("--rate", type=float, default=100.0, help="link rate, Mbit/s")
    p.add_argument("--rtt", type=float, default=50.0, help="round-trip time of case 2, ms")
    p.add_argument("--repeat", type=int, default=1, help="runs per transfer (median)")
    p.add_argument("--no-model", action="store_true", help="skip the Keras SavedModel payload")
    p.add_argument(
        "--model-fanout",
        action="store_true",
        help="case 3 pushes the SavedModel too (Ansible takes ~90 s on 16 devices)",
    )
    p.add_argument(
        "--device-python",
        default=sys.executable,
        help="Python the devices run (agent, Ansible modules); default: this one",
    )
    p.add_argument(
        "--wait-idle",
        type=float,
        default=0.0,
        metavar="S",
        help="before each measurement, wait up to S seconds for other "
        "processes to leave the CPUs mostly idle (shared machines)",
    )
    p.add_argument(
        "--results",
        type=Path,
        default=None,
        help=f"where to write the results (default {RESULTS}; not for --quick)",
    )
    p.add_argument("--no-write", action="store_true", help="print only; write no file")
    args = p.parse_args(argv)
    args.devices = args.devices or (4 if args.quick else 16)
    args.probe_devices = args.probe_devices or (2 * args.devices if args.quick else 32)
    args.mib = args.mib or (32 if args.quick else 128)
    args.scale_devices = args.scale_devices or (8 if args.quick else 64)
    args.scale_mib = args.scale_mib or (8 if args.quick else 32)
    args.cases = sorted({int(c) for c in args.cases.split(",") if c.strip()})
    if bad := [c for c in args.cases if c not in CASES]:
        p.error(f"unknown case(s) {bad}; cases are 1-{max(CASES)}")
    if args.results is None and not args.quick:
        args.results = RESULTS
    return args


def notes(args: argparse.Namespace, tools: Tools, lab_devices: int) -> list[str]:
    """How the numbers were taken, and which baselines were skipped (and why)."""
    out = [f"Skipped: {tool}: {why}" for tool, why in tools.missing.items()]
    out += [
        f"Devices: OpenSSH sshd (its defaults; `internal-sftp`) in {lab_devices} network "
        "namespaces, each behind its own veth pair, on this same machine (client and "
        "devices share the CPUs). Destinations are emptied before every cold measurement; "
        "edge's installed agent stays (as scp, rsync and Python stay installed for the "
        "baselines), except for the 'agent not installed' probe row, which removes it.",
        f"Links: `tc tbf rate {args.rate:g}mbit` on both ends of each veth (MTU 1500); "
        "line time = bytes*8/rate. TCP over Ethernet framing cannot exceed 1448/1514 = "
        "95.6% of it: the raw TCP row is the practical ceiling.",
        f"Case 2 latency: the userspace delay proxy (netlab/delay.py, {args.rtt / 2:g} ms "
        "each way; `sch_netem` is absent on this kernel). It hides TCP's own window and "
        "slow start, so SSH's channel windows are what the RTT limits.",
        "OpenSSH runs with its defaults (Debian 12: kex sntrup761x25519, ~0.4 s of CPU per "
        "connection on this VM); one case 5 row shows ssh with curve25519 for comparison.",
        "Ansible: ad hoc `ansible GROUP -m copy|ping -f N`, its default ssh_args (-C, "
        "ControlMaster auto, ControlPersist 60s), pipelining on; 'cold' = no master "
        "connections left from an earlier run.",
        "parallel-ssh: ParallelSSHClient (ssh2-python/libssh2), pool size = devices, "
        "copy_file (SFTP) and run_command; it does not check host keys.",
        "edge: the installed CLI with an inventory written by `edge fleet add` (tags per "
        "device count), EDGE_SSH_CONFIG/EDGE_KNOWN_HOSTS at the lab files; `edge push DIR "
        "--to tag:nN --parallel N --json` (N = devices, as Ansible's forks), `edge fleet "
        "probe tag:nN --json`; the warm probe runs with `edge mux start` (edge's "
        "ControlPersist: warm connections and a resident agent per device), primed by one "
        "untimed probe. The random payload is a directory: the file plus a 4-byte "
        "saved_model.pb stub; baselines copy the file alone.",
        "Case 4: before the timed re-pushes, the baselines' destination files are placed "
        "locally (same bytes, mode and mtime); edge's first push is made by edge itself "
        "(uncapped; a no-op when case 3 left it there).",
        f"Case 5 probe command (ssh, parallel-ssh): `{args.device_python} -c 'import sys; "
        "print(sys.version)'`; Ansible runs its ping module with that Python.",
        "A tool run that fails is retried once; its row then says so. Medians where a row "
        "says 'median of N'; --repeat sets N for the transfers. In cases 1 to 3, scp (the "
        "baseline the targets name) and edge take turns, max(3, --repeat) rounds, the order "
        "reversed every other round (scp, edge, edge, scp, scp, edge), so that a change in "
        "the machine's speed mid-run weighs on both alike; their notes give the spread.",
        f"Device Python (agent, Ansible modules, ssh/pssh probe command): {args.device_python}",
        "Python tools on the client run with a bytecode cache (PYTHONPYCACHEPREFIX in the "
        "run's temp dir; PYTHONDONTWRITEBYTECODE unset), as after a normal install; one "
        "untimed tiny run of edge, Ansible and parallel-ssh fills it before the cases. "
        "Device-side processes get sshd's plain environment.",
    ]
    out += [
        "Client CPU: user+sys seconds of the tool's processes and every descendant they "
        "waited for (getrusage(RUSAGE_CHILDREN) deltas around the waited run; the lab's "
        "sshd and delay proxy are the harness's children too, and a row whose run saw one "
        "of them reaped says 'client CPU not counted'). Device-side CPU (sshd, the agent) "
        "is not in it. CPU ms/MiB = CPU over payload x devices. A daemon a tool leaves "
        "running (edge mux, Ansible's ssh masters) is not counted: warm rows are low bounds.",
        "paramiko put: netlab/paramiko_put.py, one process, a thread per device, "
        "SSHClient + SFTPClient.put of the file (aes128-gcm@openssh.com first, as edge "
        "prefers it; host keys checked): the floor of a paramiko-based data path.",
        f"Case 6 (scale): unshaped veths (no tbf), random {args.scale_mib} MiB; "
        f"{args.devices} and {args.scale_devices} devices; 'aggregate MiB/s' = payload x "
        "devices / seconds. Client and every sshd share this machine's CPUs, so the growth "
        "shows where the CPUs, not the links, cap each tool.",
    ]
    if not args.model_fanout:
        out.append("Case 3 pushed the random file only (--model-fanout adds the SavedModel).")
    return out


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _command(argv: list[str] | None) -> str:
    """The command line, with paths relative to the repository where they lie in it."""
    root = HERE.parent
    words = [sys.executable, sys.argv[0], *(sys.argv[1:] if argv is None else argv)]
    rel = [os.path.relpath(w, root) if w.startswith(str(root) + "/") else w for w in words]
    rel[1] = os.path.relpath(os.path.abspath(rel[1]), root)
    return f"cd {root} && " + shlex.join(rel)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    require_root()
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)
    started = time.monotonic()
    command = _command(argv)
    lab_n = max(
        [args.devices if c in (3, 4, 5, 6) else 1 for c in args.cases]
        + [args.probe_devices if 5 in args.cases else 1]
        + [args.scale_devices if 6 in args.cases else 1]
    )
    work = Path(tempfile.mkdtemp(prefix="edge-bench-"))
    # Python tools (edge, ansible) run with a bytecode cache, as in a normal install; the
    # cache lives in the temp dir, so nothing is written into the source tree.
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
    load_before = Path("/proc/loadavg").read_text().split()[:3]
    try:
        model = None
        if not args.no_model and (1 in args.cases or (3 in args.cases and args.model_fanout)):
            print("[setup] Keras SavedModel (built once, then cached) ...", file=sys.stderr)
            model = savedmodel_payload(args.device_python)
        random = random_payload(work, args.mib)
        scale = None
        if 6 in args.cases:
            scale = random if args.scale_mib == args.mib else random_payload(work, args.scale_mib)
        with Lab(lab_n) as lab:
            tools = Tools(lab, work, args.device_python, timeout=120.0)
            sizes = {1, args.devices, args.probe_devices, args.scale_devices}
            groups = {f"n{k}": lab.devices[:k] for k in sorted(sizes) if k <= lab_n}
            print(f"[setup] fleet inventory with edge fleet add x{lab_n} ...", file=sys.stderr)
            if tools.has("edge"):
                tools.edge_setup(groups)
            if tools.has("ansible"):
                tools.ansible_setup(groups)
            tools.warm_up(lab.devices[0])
            ctx = Ctx(
                lab,
                tools,
                random,
                model,
                args.devices,
                args.probe_devices,
                rate_mbit=args.rate,
                delay_ms=args.rtt / 2,
                repeat=args.repeat,
                model_fanout=args.model_fanout,
                wait_idle=args.wait_idle,
                scale=scale,
                scale_devices=(args.devices, args.scale_devices),
            )
            for case in args.cases:
                print(f"[case {case}] {CASES[case].__doc__}", file=sys.stderr, flush=True)
                CASES[case](ctx)
            run_notes = notes(args, tools, lab_n)
    except KeyboardInterrupt:
        print("interrupted: the lab is torn down", file=sys.stderr)
        return 130
    finally:
        shutil.rmtree(work, ignore_errors=True)
    elapsed = time.monotonic() - started
    targets = check_targets(ctx.rows, args.devices)
    print(table(ctx.rows) + "\n\n" + targets_md(targets))
    print(f"\n{elapsed:.0f} s in all", file=sys.stderr)
    if args.results and not args.no_write:
        info = machine_info(HERE.parent)
        info["load average (1/5/15 min) before / after"] = (
            " ".join(load_before) + " / " + " ".join(Path("/proc/loadavg").read_text().split()[:3])
        )
        busy = sorted(r.others_busy for r in ctx.rows if r.samples or r.note)
        if busy:
            info["CPU busy while the harness idled before each measurement"] = (
                f"median {100 * busy[len(busy) // 2]:.0f}%, max {100 * busy[-1]:.0f}% "
                f"(other processes, writeback; rows above {100 * BUSY_WARN:.0f}% say so)"
            )
        write_results(args.results, command, info, ctx.rows, targets, run_notes, elapsed)
        print(f"wrote {args.results}", file=sys.stderr)
    elif args.quick:
        print("(--quick writes no results file; pass --results PATH to keep one)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
