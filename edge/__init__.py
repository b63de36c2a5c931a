"""jetson-edge host toolkit: fleet, transport, push, jobs, runs and reports."""

from device_agent import __version__

__all__ = ["__version__"]
