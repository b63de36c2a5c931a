"""The device's TensorRT stack in one probe: `info --deep`, `edge fleet probe` and every
plan show it (`protocol.DeviceFacts.capabilities`, `ConversionPlan.capabilities`).

What it finds: the `tensorrt` module's full version, whether TF-TRT really loads (linked
and loaded TensorRT both set and equal), pycuda, the DLA cores TensorRT's builder sees
(deep only: it creates a builder), trtexec, the CUDA version, and each backend's answer.
"""

from __future__ import annotations

import json
import os
import re
from typing import Optional

from .trt_types import BackendCheck, Capabilities

TRTEXEC_PATHS = ("/usr/src/tensorrt/bin/trtexec", "/usr/local/tensorrt/bin/trtexec")
CUDA_ROOTS = ("/usr/local/cuda",)


def trtexec_path() -> Optional[str]:
    """trtexec on PATH, else where JetPack installs it."""
    import shutil  # here: the deep cache imports this module for its paths only

    found = shutil.which("trtexec")
    if found:
        return found
    return next((p for p in TRTEXEC_PATHS if os.access(p, os.X_OK)), None)


def cuda_version(roots: tuple = CUDA_ROOTS) -> Optional[str]:
    """CUDA's version from the toolkit's version.json (CUDA 11.1+) or version.txt."""
    for root in roots:
        try:
            with open(os.path.join(root, "version.json")) as f:
                data = json.load(f)
            version = data.get("cuda", {}).get("version") if isinstance(data, dict) else None
            if isinstance(version, str) and re.match(r"^\d+(\.\d+)*$", version):
                return version
        except (OSError, ValueError, AttributeError):
            pass
        try:
            with open(os.path.join(root, "version.txt")) as f:
                m = re.search(r"(\d+\.\d+(?:\.\d+)?)", f.read(4096))
            if m:
                return m.group(1)
        except OSError:
            pass
    return None


def collect(deep: bool = False) -> Capabilities:
    """The probe (see the module docstring); `deep` also counts DLA cores."""
    from .backends import probe_all
    from .backends.tensorrt import dla_cores, pycuda_version
    from .simulate import active

    checks = probe_all()
    sim = active()
    tftrt = checks.get("tftrt")
    trt = checks.get("tensorrt")
    caps = Capabilities(
        tensorrt=trt.versions.get("tensorrt") if trt is not None else None,
        tftrt=bool(tftrt and tftrt.available),
        tftrt_reason=tftrt.reason if tftrt is not None else "",
        backends=[BackendCheck(c.backend, c.available, c.reason) for c in checks.values()],
        simulated=sim is not None,
    )
    if sim is not None:
        caps.cuda, caps.dla_cores, caps.pycuda = sim.stack.cuda, sim.dla_cores, "(assumed)"
        return caps
    caps.pycuda = pycuda_version()
    caps.trtexec = trtexec_path()
    caps.cuda = cuda_version()
    if deep and trt is not None and trt.available:
        caps.dla_cores = dla_cores()
    return caps
