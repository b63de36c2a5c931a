"""Transports move bytes and run argument lists on a device. They know nothing of models."""

from edge.transport.base import CommandResult, RangeTask, Transport, TransportError
from edge.transport.local import LocalTransport

__all__ = ["CommandResult", "LocalTransport", "RangeTask", "Transport", "TransportError"]
