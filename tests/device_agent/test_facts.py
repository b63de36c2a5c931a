"""device_agent.facts.collect() against real-device file trees (tests/data/sysroots)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Dict, Optional

import pytest

from device_agent import __version__, facts
from device_agent.protocol import PROTOCOL_VERSION, DeviceFacts

SYSROOTS = Path(__file__).resolve().parents[1] / "data" / "sysroots"
REPO = Path(__file__).resolve().parents[2]
PY38 = "/root/.pyenv/versions/3.8.18/bin/python"

# Expected facts, derived by hand from the files of each sysroot (kB // 1024 for memory;
# the derivations of the meminfo files themselves are in PROVENANCE.md). hostname None
# means the sysroot has no /etc/hostname, so this host's name is expected.
EXPECTED: Dict[str, Dict[str, Any]] = {
    "nano-jp4": {
        "hostname": "funtime-desktop",
        "memory_total_mb": 3964,  # MemTotal 4059240 kB
        "memory_available_mb": 578,  # MemAvailable 592696 kB
        "swap_total_mb": 1982,  # SwapTotal 2029616 kB
        "jetson": {
            "module": "Jetson Nano 4GB",
            "device_class": "nano-4gb",
            "l4t": "32.7.1",
            "jetpack": "4.6.1",
            "compute_capability": "5.3",
            "memory_mb": 4096,
            "soc": "tegra210",
            "device_tree_model": "NVIDIA Jetson Nano Developer Kit",
            "nvpmodel": "MAXN",  # pmode:0000 -> ID=0 NAME=MAXN
            "jetson_clocks": None,  # no cpufreq/devfreq files in this tree
        },
    },
    "xavier-nx-jp5": {
        "hostname": None,
        "memory_total_mb": 7771,
        "memory_available_mb": 2525,  # 7771 - 5246 MB
        "swap_total_mb": 20269,
        "jetson": {
            "module": "Jetson Xavier NX 8GB",
            "device_class": "xavier-nx-8gb",
            "l4t": "35.3.1",
            "jetpack": "5.1.1",
            "compute_capability": "7.2",
            "memory_mb": 8192,
            "soc": "tegra194",
            "device_tree_model": "NVIDIA Jetson Xavier NX Developer Kit",
            "nvpmodel": None,  # no nvpmodel files in this tree
            "jetson_clocks": False,  # GPU min == max, but every CPU's 115200 < 1907200 kHz
        },
    },
    "orin-nano-jp6": {
        "hostname": "jetsson",
        "memory_total_mb": 7619,  # MemTotal 7802736 kB (tegrastats rounds to 7620)
        "memory_available_mb": 6099,  # MemAvailable 6245596 kB
        "swap_total_mb": 3809,  # SwapTotal 3901344 kB
        "jetson": {
            "module": "Jetson Orin Nano 8GB",
            "device_class": "orin-nano-8gb",
            "l4t": "36.4.7",
            "jetpack": "6.2.1",
            "compute_capability": "8.7",
            "memory_mb": 8192,
            "soc": "tegra234",
            "device_tree_model": (
                "NVIDIA Jetson Orin Nano Engineering Reference Developer Kit Super"
            ),
            "nvpmodel": "MAXN_SUPER",  # pmode:0002 -> ID=2 NAME=MAXN_SUPER
            "jetson_clocks": True,  # 6 CPUs and 17000000.gpu at min == max (VIC not counted)
        },
    },
    "agx-orin-jp6": {
        "hostname": None,
        "memory_total_mb": 62841,
        "memory_available_mb": 44634,  # 62841 - 18207 MB
        "swap_total_mb": 31420,
        "jetson": {
            "module": "Jetson AGX Orin 64GB",
            "device_class": "agx-orin-64gb",
            "l4t": "36.4.4",
            "jetpack": "6.2.1",
            "compute_capability": "8.7",
            "memory_mb": 65536,
            "soc": "tegra234",
            "device_tree_model": "NVIDIA Jetson AGX Orin Developer Kit",
            "nvpmodel": None,
            "jetson_clocks": None,
        },
    },
    "thor-jp7": {
        "hostname": None,
        "memory_total_mb": 125749,
        "memory_available_mb": 122320,  # 125749 - 3429 MB
        "swap_total_mb": 0,  # no SwapTotal line
        "jetson": {
            "module": "Jetson AGX Thor 128GB",
            "device_class": "thor-128gb",
            "l4t": "38.2.2",
            "jetpack": "7.0",
            "compute_capability": "11.0",
            "memory_mb": 131072,
            "soc": "tegra264",
            "device_tree_model": "NVIDIA Jetson AGX Thor Developer Kit",
            "nvpmodel": None,
            "jetson_clocks": None,
        },
    },
    "x86-host": {
        "hostname": "devbox",
        "memory_total_mb": 63429,  # MemTotal 64951852 kB
        "memory_available_mb": 62083,  # MemAvailable 63573604 kB
        "swap_total_mb": 0,  # head -5 of meminfo: no SwapTotal line
        "jetson": None,
    },
}


def test_every_sysroot_has_expectations() -> None:
    on_disk = sorted(p.name for p in SYSROOTS.iterdir() if p.is_dir())
    assert on_disk == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_collect_sysroot(name: str) -> None:
    want = EXPECTED[name]
    got = facts.collect(str(SYSROOTS / name), root_dir=str(SYSROOTS))
    assert got.hostname == (want["hostname"] or socket.gethostname())
    assert got.memory_total_mb == want["memory_total_mb"]
    assert got.memory_available_mb == want["memory_available_mb"]
    assert got.swap_total_mb == want["swap_total_mb"]
    if want["jetson"] is None:
        assert got.jetson is None
    else:
        assert got.jetson is not None
        assert got.jetson.to_dict() == want["jetson"]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_facts_round_trip_through_json(name: str) -> None:
    got = facts.collect(str(SYSROOTS / name), root_dir=str(SYSROOTS))
    assert DeviceFacts.from_json(got.to_json()) == got


def test_host_fields_come_from_this_interpreter() -> None:
    import platform

    got = facts.collect(str(SYSROOTS / "x86-host"), root_dir=str(SYSROOTS))
    assert got.agent_version == __version__
    assert got.protocol == PROTOCOL_VERSION
    assert got.python == platform.python_version()
    assert got.machine == platform.machine()
    assert got.tensorrt_enabled is None and got.tensorrt_linked is None


def _first_installed(names: Any) -> Optional[str]:
    for name in names:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return None


def test_library_versions_come_from_package_metadata() -> None:
    got = facts.collect(str(SYSROOTS / "x86-host"), root_dir=str(SYSROOTS))
    assert got.tensorflow == _first_installed(
        ["tensorflow", "tensorflow-cpu", "tensorflow-aarch64"]
    )
    assert got.numpy == _first_installed(["numpy"])
    assert facts.dist_version(["no-such-dist-jetson-edge-test"]) is None


# --------------------------------------------------------------------------- disk


def test_disk_free_uses_nearest_existing_ancestor(tmp_path: Path) -> None:
    missing = tmp_path / "not" / "yet" / ".edge"
    assert facts.existing_ancestor(str(missing)) == str(tmp_path)
    free = shutil.disk_usage(str(tmp_path)).free // (1024 * 1024)
    got = facts.collect(str(SYSROOTS / "x86-host"), root_dir=str(missing)).disk_free_mb
    assert got > 0
    assert abs(got - free) < 256  # other processes may write meanwhile


def test_disk_free_is_not_read_under_sysroot(tmp_path: Path) -> None:
    # the sysroot is data only; the agent root is measured where it really is
    got = facts.collect(str(tmp_path / "no-sysroot"), root_dir=str(tmp_path))
    assert abs(got.disk_free_mb - shutil.disk_usage(str(tmp_path)).free // 2**20) < 256


# --------------------------------------------------------------------------- tolerance


def test_empty_sysroot_is_a_plain_host(tmp_path: Path) -> None:
    got = facts.collect(str(tmp_path), root_dir=str(tmp_path))
    assert got.jetson is None
    assert got.memory_total_mb == 0 and got.memory_available_mb == 0 and got.swap_total_mb == 0
    assert got.hostname == socket.gethostname()


def _copy(name: str, dest: Path) -> Path:
    shutil.copytree(str(SYSROOTS / name), str(dest))
    return dest


def test_unreadable_files_are_tolerated(tmp_path: Path) -> None:
    root = _copy("orin-nano-jp6", tmp_path / "root")
    # a directory where a file should be, a dangling symlink, undecodable bytes
    (root / "proc" / "meminfo").unlink()
    (root / "proc" / "meminfo").mkdir()
    (root / "etc" / "nvpmodel.conf").unlink()
    os.symlink(str(root / "nowhere"), str(root / "etc" / "nvpmodel.conf"))
    (root / "proc" / "device-tree" / "model").write_bytes(b"NVIDIA Jetson \xff\xfe\0")
    got = facts.collect(str(root), root_dir=str(tmp_path))
    assert got.memory_total_mb == 0
    assert got.jetson is not None
    # part number p3767-0005 still identifies the module without memory or model
    assert got.jetson.device_class == "orin-nano-8gb"
    assert got.jetson.device_tree_model == "NVIDIA Jetson \ufffd\ufffd"
    assert got.jetson.nvpmodel == "mode 2"  # status read, conf unreadable


def test_release_file_alone_marks_a_jetson(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    shutil.copy(str(SYSROOTS / "orin-nano-jp6" / "etc" / "nv_tegra_release"), str(root / "etc"))
    got = facts.collect(str(root), root_dir=str(tmp_path))
    assert got.jetson is not None
    assert (got.jetson.l4t, got.jetson.jetpack) == ("36.4.7", "6.2.1")
    assert got.jetson.module == "Unknown Jetson (unknown SoC)"
    assert got.jetson.device_class is None and got.jetson.memory_mb is None


def test_tegra_compatible_alone_marks_a_jetson(tmp_path: Path) -> None:
    root = _copy("thor-jp7", tmp_path / "root")
    (root / "etc" / "nv_tegra_release").unlink()
    got = facts.collect(str(root), root_dir=str(tmp_path))
    assert got.jetson is not None
    assert got.jetson.l4t is None and got.jetson.jetpack is None
    assert got.jetson.device_class == "thor-128gb"


def test_unknown_future_l4t(tmp_path: Path) -> None:
    root = _copy("thor-jp7", tmp_path / "root")
    (root / "etc" / "nv_tegra_release").write_text(
        "# R41 (release), REVISION: 1.0, GCID: 1, BOARD: generic, EABI: aarch64, "
        "DATE: Thu Jan  1 00:00:00 UTC 2027\n"
    )
    got = facts.collect(str(root), root_dir=str(tmp_path))
    assert got.jetson is not None
    assert got.jetson.l4t == "41.1.0"
    assert got.jetson.jetpack is None
    assert got.jetson.device_class == "thor-128gb"


def test_garbage_release_file(tmp_path: Path) -> None:
    root = _copy("agx-orin-jp6", tmp_path / "root")
    (root / "etc" / "nv_tegra_release").write_bytes(b"\x00\xffnot a release\n")
    got = facts.collect(str(root), root_dir=str(tmp_path))
    assert got.jetson is not None and got.jetson.l4t is None and got.jetson.jetpack is None
    assert got.jetson.device_class == "agx-orin-64gb"


def test_unidentified_tegra_board_keeps_its_model(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "proc" / "device-tree").mkdir(parents=True)
    (root / "proc" / "device-tree" / "model").write_bytes(b"ACME Robot Brain\0")
    (root / "proc" / "device-tree" / "compatible").write_bytes(b"acme,brain\0nvidia,tegra234\0")
    got = facts.collect(str(root), root_dir=str(tmp_path))  # no meminfo: variant unknown
    assert got.jetson is not None
    assert got.jetson.module == "ACME Robot Brain"
    assert got.jetson.device_class is None
    assert (got.jetson.soc, got.jetson.compute_capability) == ("tegra234", "8.7")


# --------------------------------------------------------------------------- no TensorFlow


def _run(code: str, *args: str, python: str = sys.executable) -> str:
    """Run `code` in a fresh interpreter (cwd = repo root) with `args` as sys.argv[1:]."""
    proc = subprocess.run(
        [python, "-c", code, *args],
        cwd=str(REPO),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_collect_imports_neither_tensorflow_nor_numpy() -> None:
    out = _run(
        "import sys, json\n"
        "from device_agent import facts\n"
        "f = facts.collect(sys.argv[1])\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'numpy'))\n"
        "print(json.dumps([f.jetson.device_class, heavy]))\n",
        str(SYSROOTS / "orin-nano-jp6"),
    )
    device_class, heavy = json.loads(out)
    assert device_class == "orin-nano-8gb"
    assert heavy == []


def test_collect_is_fast() -> None:
    root = str(SYSROOTS / "orin-nano-jp6")
    facts.collect(root)  # warm caches
    start = time.perf_counter()
    facts.collect(root)
    assert time.perf_counter() - start < 0.3


def test_deep_without_tensorflow_leaves_trt_unknown() -> None:
    # sys.modules["tensorflow"] = None makes every TensorFlow import fail
    out = _run(
        "import sys\n"
        "sys.modules['tensorflow'] = None\n"
        "from device_agent import facts\n"
        "print(facts.collect(sys.argv[1], deep=True).to_json())\n",
        str(SYSROOTS / "x86-host"),
    )
    got = DeviceFacts.from_json(out)
    assert (got.tensorrt_enabled, got.tensorrt_linked, got.tensorrt_loaded) == (None, None, None)


def test_version_string() -> None:
    assert facts._version_string((8, 5, 2)) == "8.5.2"
    assert facts._version_string([10, 3, 0]) == "10.3.0"
    assert facts._version_string((0, 0, 0)) is None
    assert facts._version_string(None) is None


@pytest.mark.skipif(
    _first_installed(["tensorflow", "tensorflow-cpu", "tensorflow-aarch64"]) is None,
    reason="TensorFlow is not installed",
)
def test_deep_matches_tf_trt_bindings() -> None:
    # Ask TensorFlow's bindings directly in the same process, then compare with collect().
    out = _run(
        "import json, sys\n"
        "from device_agent import facts\n"
        "f = facts.collect(sys.argv[1], deep=True)\n"
        "try:\n"
        "    from tensorflow.compiler.tf2tensorrt import _pywrap_py_utils as u\n"
        "    direct = [bool(u.is_tensorrt_enabled()), list(u.get_linked_tensorrt_version()),\n"
        "              list(u.get_loaded_tensorrt_version())]\n"
        "except ImportError:\n"
        "    direct = None\n"
        "print(json.dumps([f.to_dict(), direct]))\n",
        str(SYSROOTS / "x86-host"),
    )
    got, direct = json.loads(out)
    if direct is None:
        assert (got["tensorrt_enabled"], got["tensorrt_linked"]) == (False, None)
        return
    enabled, linked, loaded = direct
    assert got["tensorrt_enabled"] is enabled
    assert got["tensorrt_linked"] == (".".join(map(str, linked)) if any(linked) else None)
    assert got["tensorrt_loaded"] == (".".join(map(str, loaded)) if any(loaded) else None)


# --------------------------------------------------------------------------- Python 3.8


@pytest.mark.skipif(not os.path.exists(PY38), reason="no Python 3.8 interpreter here")
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_collect_on_python38(name: str) -> None:
    # The agent runs on JetPack 5's Python 3.8: same facts from the same files.
    out = _run(
        "import sys; sys.path.insert(0, sys.argv[1])\n"
        "from device_agent import facts\n"
        "print(facts.collect(sys.argv[2], root_dir=sys.argv[3]).to_json())\n",
        str(REPO),
        str(SYSROOTS / name),
        str(SYSROOTS),
        python=PY38,
    )
    got = DeviceFacts.from_json(out)
    assert got.python.startswith("3.8.")
    assert got.memory_total_mb == EXPECTED[name]["memory_total_mb"]
    want = EXPECTED[name]["jetson"]
    assert (got.jetson.to_dict() if got.jetson else None) == want


def test_dist_versions_agree_with_importlib_metadata() -> None:
    from importlib import metadata

    installed = facts._installed()
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name and installed.get(facts._norm(name)) is not None:
            assert installed[facts._norm(name)] == dist.version, name
    assert facts.dist_version(["NumPy"]) == metadata.version("numpy")


def test_dist_version_reads_egg_info_names(tmp_path, monkeypatch) -> None:
    (tmp_path / "tensorrt-8.5.2.2-py3.8.egg-info").write_text("Name: tensorrt\n")
    (tmp_path / "Some.Thing-1.0.dist-info").mkdir()
    (tmp_path / "noversion.egg-info").mkdir()
    monkeypatch.setattr(facts.sys, "path", [str(tmp_path)])
    assert facts.dist_version(["tensorrt"]) == "8.5.2.2"
    assert facts.dist_version(["some-thing"]) == "1.0"
    assert facts.dist_version(["noversion"]) is None
