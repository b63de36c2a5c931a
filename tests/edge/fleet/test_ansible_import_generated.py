"""Ansible import on a generated inventory: hosts in several groups, nested children,
vars on every level; each device checked against what the generator put there. (The
import's timing is benchmarks/ansible_import.py, not a unit test.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.fleet.ansible import import_ansible

N = 3000


def expected(i: int) -> dict:
    user = f"h{i}" if i % 7 == 0 else ("rack5user" if i % 10 == 5 else "jetson")
    return {
        "name": f"n{i:05d}",
        "host": f"10.0.{i >> 8}.{i & 255}",
        "user": user,
        "port": 2201 if i % 3 == 1 else None,
        "python": "/usr/bin/python3",
        "tags": sorted({f"rack{i % 10}", f"gpu{i % 3}", "lab", "gpu"}),
    }


def _hostvars(i: int) -> dict[str, str]:
    hv = {"ansible_host": f"10.0.{i >> 8}.{i & 255}"}
    if i % 7 == 0:
        hv["ansible_user"] = f"h{i}"
    return hv


def write_ini(path: Path) -> list[int]:
    """Racks first (rack order, each host listed twice), then the gpu groups; returns the
    host numbers in order of first appearance."""
    lines, order = ["[all:vars]", "ansible_user=root"], []
    for r in range(10):
        lines.append(f"[rack{r}]")
        for i in range(r, N, 10):
            order.append(i)
            hv = " ".join(f"{k}={v}" for k, v in _hostvars(i).items())
            lines += [f"n{i:05d} {hv}", f"n{i:05d}"]
    for g in range(3):
        lines.append(f"[gpu{g}]")
        lines += [f"n{i:05d}" for i in range(g, N, 3)]
    lines += ["[rack5:vars]", "ansible_user=rack5user", "[gpu1:vars]", "ansible_port=2201"]
    lines += ["[lab:children]"] + [f"rack{r}" for r in range(10)]
    lines += ["[lab:vars]", "ansible_user=jetson", "ansible_python_interpreter=/usr/bin/python3"]
    lines += ["[gpu:children]", "gpu0", "gpu1", "gpu2"]
    path.write_text("\n".join(lines) + "\n")
    return order


def write_yaml(path: Path) -> list[int]:
    racks = {
        f"rack{r}": {"hosts": {f"n{i:05d}": _hostvars(i) for i in range(r, N, 10)}}
        for r in range(10)
    }
    racks["rack5"]["vars"] = {"ansible_user": "rack5user"}
    gpus = {f"gpu{g}": {"hosts": {f"n{i:05d}": None for i in range(g, N, 3)}} for g in range(3)}
    gpus["gpu1"]["vars"] = {"ansible_port": 2201}
    import yaml

    path.write_text(
        yaml.safe_dump(
            {
                "all": {
                    "vars": {"ansible_user": "root"},
                    "children": {
                        "lab": {
                            "vars": {
                                "ansible_user": "jetson",
                                "ansible_python_interpreter": "/usr/bin/python3",
                            },
                            "children": racks,
                        },
                        "gpu": {"children": gpus},
                    },
                }
            },
            sort_keys=False,
        )
    )
    return [i for r in range(10) for i in range(r, N, 10)]


@pytest.mark.parametrize("fmt", ["ini", "yaml"])
def test_generated_inventory_imports_every_host_right(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"hosts.{fmt}"
    order = (write_ini if fmt == "ini" else write_yaml)(path)
    devices = import_ansible(path)
    assert [d.name for d in devices] == [f"n{i:05d}" for i in order]
    for i, d in zip(order, devices):
        got = {
            "name": d.name,
            "host": d.host,
            "user": d.user,
            "port": d.port,
            "python": d.python,
            "tags": d.tags,
        }
        assert got == expected(i), i
