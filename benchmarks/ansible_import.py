"""Ansible inventory import: time per host must not grow with the inventory (linear).

Imports generated inventories (INI, and YAML for the largest) of N hosts spread over
groups with children and vars, adds them to a fresh fleet inventory and saves it. Prints the
seconds per size and the ratio time(N) / (N/N0 * time(N0)) against a linear baseline
(about 1 when linear; about N/N0 when quadratic).

    .venv/bin/python benchmarks/ansible_import.py [MAX_HOSTS]   # default 100000
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from edge.fleet.ansible import import_ansible


def write_ini(path: Path, hosts: int, groups: int = 50) -> None:
    """`hosts` hosts in `groups` groups (each also in `all_lab`), with vars on every level."""
    lines = []
    per = max(1, hosts // groups)
    for g in range(groups):
        lines.append(f"[rack{g}]")
        lo, hi = g * per, hosts if g == groups - 1 else (g + 1) * per
        lines += [
            f"jetson{i:06d} ansible_host=10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"
            for i in range(lo, hi)
        ]
        lines += [f"[rack{g}:vars]", "ansible_user=jetson"]
    lines += ["[lab:children]"] + [f"rack{g}" for g in range(groups)]
    lines += ["[lab:vars]", "ansible_python_interpreter=/usr/bin/python3"]
    path.write_text("\n".join(lines) + "\n")


def write_yaml(path: Path, hosts: int, groups: int = 50) -> None:
    per = max(1, hosts // groups)
    out = [
        "all:",
        "  children:",
        "    lab:",
        "      vars: {ansible_user: jetson}",
        "      children:",
    ]
    for g in range(groups):
        lo, hi = g * per, hosts if g == groups - 1 else (g + 1) * per
        out += [f"        rack{g}:", "          hosts:"]
        out += [
            f"            jetson{i:06d}: {{ansible_host: 10.0.{i >> 8 & 255}.{i & 255}}}"
            for i in range(lo, hi)
        ]
    path.write_text("\n".join(out) + "\n")


def timed(path: Path, hosts: int) -> float:
    from edge.fleet.inventory import Inventory

    start = time.perf_counter()
    devices = import_ansible(path)
    inv = Inventory(path.with_suffix(".fleet.yaml"))
    added, _ = inv.import_devices(devices)
    inv.save()
    elapsed = time.perf_counter() - start
    assert len(devices) == len(added) == hosts, (len(devices), hosts)
    return elapsed


def main() -> None:
    top = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    sizes = [top // 8, top // 4, top // 2, top]
    with tempfile.TemporaryDirectory() as tmp:
        base_n = base_t = 0.0
        print(f"{'hosts':>8} {'format':>6} {'seconds':>9} {'vs linear':>10}")
        for fmt, writer in (("ini", write_ini), ("yaml", write_yaml)):
            for n in sizes if fmt == "ini" else [top]:
                path = Path(tmp) / f"hosts{n}.{fmt}"
                writer(path, n)
                t = timed(path, n)
                if fmt == "ini" and not base_n:
                    base_n, base_t = n, t
                ratio = t / (base_t * n / base_n)
                print(f"{n:>8} {fmt:>6} {t:>9.2f} {ratio:>10.2f}", flush=True)


if __name__ == "__main__":
    main()
