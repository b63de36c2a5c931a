"""A stand-in for pycuda on numpy, for tests without a GPU (see driver.py)."""

VERSION = (2024, 1, 2)
VERSION_TEXT = "2024.1.2"
