"""Network lab for the push benchmarks: devices in namespaces, tbf links, delay proxy."""

from .lab import Device, Lab, NotRoot, require_root
from .procs import sh

__all__ = ["Device", "Lab", "NotRoot", "require_root", "sh"]
