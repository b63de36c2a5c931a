"""A test plugin for the TensorRT version: this TensorFlow is built without TensorRT, so
TF-TRT reports none. With $FAKE_TENSORRT set, the real probe still runs (TensorFlow is
imported, its answer kept) and only the linked and loaded versions it reports are that
value, as on a board with that TensorRT. Whether TF-TRT can run is left as it was.

`install()` replaces the tftrt backend's probe, the one TensorRT probe of the agent; the
tests' sitecustomize.py calls it in every agent process.
"""

from __future__ import annotations

import os

from device_agent.backends import tftrt
from device_agent.backends.base import Capability

_real_probe = tftrt.probe


def probe() -> Capability:
    capability = _real_probe()
    version = os.environ.get("FAKE_TENSORRT")
    if version and capability.versions.get("tensorflow"):
        capability.versions.update(tensorrt_linked=version, tensorrt_loaded=version)
    return capability


def install() -> None:
    """Make `tftrt.probe` (and so `facts.probe_tensorrt`) report $FAKE_TENSORRT."""
    tftrt.probe = probe
