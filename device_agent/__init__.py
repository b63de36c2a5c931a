"""jetson-edge device agent: runs on the device's own Python (3.8+, stdlib + numpy)."""

__version__ = "0.1.0"
