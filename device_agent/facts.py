"""Device facts for `info`: module, L4T/JetPack, memory, disk, Python/TF/TRT versions.

Every file is read under a system root (`sysroot`, "/" on a device), so the same code
reads a real board or a copied tree. Fast and TensorFlow-free unless `deep=True`.
Python 3.8 compatible, stdlib only.
"""

from __future__ import annotations

import os
import re
import sys
from typing import Dict, Iterable, List, Optional, Tuple

from device_agent import __version__, jetson
from device_agent.durable import disk_usage
from device_agent.protocol_core import PROTOCOL_VERSION, DeviceFacts, JetsonInfo
from device_agent.trt_types import Capabilities

DEFAULT_ROOT_DIR = "~/.edge"
_MAX_READ = 1 << 20  # no file read here is legitimately larger

NV_TEGRA_RELEASE = "etc/nv_tegra_release"
DT_MODEL = "proc/device-tree/model"
DT_COMPATIBLE = "proc/device-tree/compatible"
DT_BOARDIDS = "proc/device-tree/nvidia,boardids"
MEMINFO = "proc/meminfo"
HOSTNAME = "etc/hostname"
NVPMODEL_STATUS = "var/lib/nvpmodel/status"
NVPMODEL_CONF = "etc/nvpmodel.conf"
CPU_DIR = "sys/devices/system/cpu"
DEVFREQ_DIR = "sys/class/devfreq"

TENSORFLOW_DISTS = ("tensorflow", "tensorflow-cpu", "tensorflow-aarch64")


# --------------------------------------------------------------------------- readers


def read_bytes(sysroot: str, relpath: str) -> Optional[bytes]:
    """Bytes of `relpath` under `sysroot`, or None if absent/unreadable/not a file."""
    path = os.path.join(sysroot, relpath.lstrip("/"))
    try:
        with open(path, "rb") as handle:
            return handle.read(_MAX_READ)
    except (OSError, ValueError):
        return None


def read_text(sysroot: str, relpath: str) -> Optional[str]:
    """Text (UTF-8, undecodable bytes replaced) of `relpath` under `sysroot`, or None."""
    data = read_bytes(sysroot, relpath)
    return None if data is None else data.decode("utf-8", errors="replace")


def parse_meminfo(text: Optional[str]) -> Dict[str, int]:
    """/proc/meminfo as {key: value in kB} (HugePages_* counts are kept as plain ints)."""
    values: Dict[str, int] = {}
    for line in (text or "").splitlines():
        key, sep, rest = line.partition(":")
        fields = rest.split()
        if sep and fields and fields[0].isdigit():
            values[key.strip()] = int(fields[0])
    return values


def read_meminfo(sysroot: str) -> Dict[str, int]:
    """Parsed /proc/meminfo under `sysroot` ({} when missing)."""
    return parse_meminfo(read_text(sysroot, MEMINFO))


def read_hostname(sysroot: str) -> str:
    """/etc/hostname under `sysroot`, else this process's host name."""
    text = (read_text(sysroot, HOSTNAME) or "").strip()
    return text.splitlines()[0].strip() if text else os.uname().nodename


def existing_ancestor(path: str) -> str:
    """`path` (after ~ expansion) or its nearest existing parent directory."""
    current = os.path.abspath(os.path.expanduser(path))
    while not os.path.exists(current):
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    return current


def disk_free_mb(root_dir: Optional[str] = None) -> int:
    """Free MB on the file system holding the agent root (default ~/.edge); 0 on error.
    This is the real disk of this host, never a path under a sysroot."""
    try:
        return disk_usage(existing_ancestor(root_dir or DEFAULT_ROOT_DIR)).free // (1024 * 1024)
    except OSError:
        return 0


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def _installed() -> Dict[str, str]:
    """normalized distribution name -> version, from the `*.dist-info` / `*.egg-info`
    names on sys.path: a directory listing each, where importlib.metadata costs ~70 ms."""
    found: Dict[str, str] = {}
    for entry in sys.path:
        try:
            names = os.listdir(entry or ".")
        except OSError:
            continue
        for n in names:
            for suffix in (".dist-info", ".egg-info"):
                if n.endswith(suffix):
                    stem = re.sub(r"-py\d+(\.\d+)*$", "", n[: -len(suffix)])
                    name, _, version = stem.partition("-")
                    if version:
                        found.setdefault(_norm(name), version.replace("_", "-"))
    return found


def dist_version(names: Iterable[str], installed: Optional[Dict[str, str]] = None) -> Optional[str]:
    """Installed version of the first of `names` found in package metadata (no import);
    `installed`: a listing from `_installed()` to reuse."""
    installed = _installed() if installed is None else installed
    for name in names:
        if _norm(name) in installed:
            return installed[_norm(name)]
    return None


def _listdir(sysroot: str, relpath: str) -> List[str]:
    try:
        return sorted(os.listdir(os.path.join(sysroot, relpath)))
    except OSError:
        return []


def read_clock_pairs(sysroot: str) -> List[Tuple[Optional[int], Optional[int]]]:
    """(min, max) frequency of every online CPU (cpufreq) and of the GPU (devfreq)."""
    pairs: List[Tuple[Optional[int], Optional[int]]] = []
    for name in _listdir(sysroot, CPU_DIR):
        if re.fullmatch(r"cpu[0-9]+", name):
            base = f"{CPU_DIR}/{name}/cpufreq/"
            lo, hi = (
                read_text(sysroot, base + f) for f in ("scaling_min_freq", "scaling_max_freq")
            )
            if lo is not None or hi is not None:
                pairs.append((jetson.parse_freq(lo), jetson.parse_freq(hi)))
    for name in _listdir(sysroot, DEVFREQ_DIR):
        if jetson.GPU_DEVFREQ_RE.search(name):
            base = f"{DEVFREQ_DIR}/{name}/"
            lo, hi = (read_text(sysroot, base + f) for f in ("min_freq", "max_freq"))
            pairs.append((jetson.parse_freq(lo), jetson.parse_freq(hi)))
    return pairs


def read_jetson(sysroot: str, mem_total_mb: Optional[int] = None) -> Optional[JetsonInfo]:
    """JetsonInfo from the files under `sysroot`; None on a host that is no Jetson
    (no /etc/nv_tegra_release and no Tegra SoC in the device-tree compatible list)."""
    release_text = read_text(sysroot, NV_TEGRA_RELEASE)
    l4t = jetson.parse_nv_tegra_release(release_text)
    compatible = jetson.parse_dt_string_list(read_bytes(sysroot, DT_COMPATIBLE))
    soc = jetson.soc_from_compatible(compatible)
    if release_text is None and soc is None:
        return None
    model = jetson.parse_dt_string(read_bytes(sysroot, DT_MODEL))
    boardids = read_bytes(sysroot, DT_BOARDIDS)
    module = jetson.identify_module(model, compatible, boardids, mem_total_mb)
    soc = soc or (module.soc if module else None)
    nvpmodel = jetson.nvpmodel_name(
        read_text(sysroot, NVPMODEL_STATUS), read_text(sysroot, NVPMODEL_CONF)
    )
    info = JetsonInfo(
        module=model or "Unknown Jetson ({})".format(soc or "unknown SoC"),
        l4t=l4t,
        jetpack=jetson.jetpack_for_l4t(l4t),
        compute_capability=jetson.compute_capability_for(soc),
        soc=soc,
        device_tree_model=model,
        nvpmodel=nvpmodel,
        jetson_clocks=jetson.clocks_pinned(read_clock_pairs(sysroot)),
    )
    if module is not None:
        info.module = module.name
        info.compute_capability = module.compute_capability
        info.memory_mb = module.memory_mb
        info.device_class = module.device_class
    return info


# --------------------------------------------------------------------------- deep probe


def _version_string(value: object) -> Optional[str]:
    """(8, 5, 2) -> "8.5.2"; None for (0, 0, 0) (not linked / not loaded) or junk."""
    from device_agent.backends.tftrt import version_string

    return version_string(value)


def probe_tensorrt() -> Tuple[Optional[bool], Optional[str], Optional[str]]:
    """(enabled, linked, loaded) TensorRT as TF-TRT sees it: the tftrt backend's probe, the
    one TensorRT probe. Imports TensorFlow. (None, None, None) when TensorFlow cannot be
    imported; enabled=False when TF has no TF-TRT bindings; a version is None when TF
    reports (0, 0, 0)."""
    from device_agent.backends.tftrt import probe

    capability = probe()
    versions = capability.versions
    if versions.get("tensorflow") is None:
        return None, None, None
    return capability.available, versions.get("tensorrt_linked"), versions.get("tensorrt_loaded")


# --------------------------------------------------------------------------- collect


def collect(sysroot: str = "/", deep: bool = False, root_dir: Optional[str] = None) -> DeviceFacts:
    """Facts of the device whose files live under `sysroot`. Disk space is measured on
    this host at `root_dir` (default ~/.edge, or its nearest existing parent).
    `deep=True` also imports TensorFlow to report TF-TRT's TensorRT versions."""
    meminfo = read_meminfo(sysroot)
    mem_total_mb = meminfo.get("MemTotal", 0) // 1024
    installed = _installed()  # one sys.path listing for every version below
    facts = DeviceFacts(
        agent_version=__version__,
        protocol=PROTOCOL_VERSION,
        python=sys.version.split()[0],  # what platform.python_version() parses
        machine=os.uname().machine,
        hostname=read_hostname(sysroot),
        memory_total_mb=mem_total_mb,
        memory_available_mb=meminfo.get("MemAvailable", meminfo.get("MemFree", 0)) // 1024,
        swap_total_mb=meminfo.get("SwapTotal", 0) // 1024,
        disk_free_mb=disk_free_mb(root_dir),
        tensorflow=dist_version(TENSORFLOW_DISTS, installed),
        numpy=dist_version(("numpy",), installed),
        jetson=read_jetson(sysroot, mem_total_mb or None),
    )
    if deep:
        # a simulation is only ever active once its module is loaded: spare the import
        simulate = sys.modules.get("device_agent.simulate")
        simulated = simulate is not None and simulate.active() is not None
        if sysroot == "/" and root_dir is not None and not simulated:
            from device_agent.deep_cache import cached_deep

            found = cached_deep(root_dir, installed, _deep_probe)
        else:
            found = _deep_probe()
        facts.tensorrt_enabled, facts.tensorrt_linked, facts.tensorrt_loaded = found[:3]
        facts.capabilities = found[3]
    return facts


class ProbeNeeded(Exception):
    """Raised instead of a deep probe while `set_cached_only(True)` holds: the caller then
    answers in a process whose imports do not outlive the answer."""


_CACHED_ONLY = [False]


def set_cached_only(on: bool) -> None:
    """While on, `collect(deep=True)` answers only from the deep probe's cache and raises
    ProbeNeeded where it would import TensorFlow (the resident `serve` sets it)."""
    _CACHED_ONLY[0] = on


def _deep_probe() -> Tuple[Optional[bool], Optional[str], Optional[str], Capabilities]:
    if _CACHED_ONLY[0]:
        raise ProbeNeeded("the deep probe's answer is not cached")
    return _deep_probe_now()


def _deep_probe_now() -> Tuple[Optional[bool], Optional[str], Optional[str], Capabilities]:
    from device_agent.capabilities import collect as collect_capabilities

    return (*probe_tensorrt(), collect_capabilities(deep=True))
