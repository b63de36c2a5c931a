"""Plan as a board you do not have: `edge convert --dry-run --board CLASS --jetpack X.Y`.

The `plan` command activates a simulation for one answer: the facts are the module's
(from the module table), the TensorRT stack is that JetPack's (`jetpack.STACKS`), and the
backends' probes answer from it instead of importing anything. A convert job never runs
simulated: the job refuses a spec that asks for it.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from typing import Optional

from . import __version__
from .errors import AgentError
from .jetpack import JetpackStack, board, dla_cores, jetpack_supports, stack_for
from .jetson import Module
from .protocol_core import PROTOCOL_VERSION, DeviceFacts, JetsonInfo


@dataclass(frozen=True)
class Simulated:
    module: Module
    jetpack: str
    stack: JetpackStack

    @property
    def dla_cores(self) -> int:
        """DLA cores as TensorRT would report them (none before 11.4 on JetPack 7)."""
        return dla_cores(self.module)


_active: Optional[Simulated] = None


def activate(board_name: str, jetpack: str) -> Simulated:
    """Simulate `board_name` on `jetpack` until `deactivate` (AgentError naming the fix
    for an unknown board, a JetPack the agent cannot run on, or a pair that does not
    exist)."""
    global _active
    module = board(board_name)
    stack = stack_for(jetpack)
    why = jetpack_supports(module, jetpack)
    if why is not None:
        raise AgentError(
            f"{module.name} does not run JetPack {jetpack}: {why}.",
            "Pick a JetPack that board runs (edge fleet boards lists them).",
        )
    _active = Simulated(module, jetpack, stack)
    return _active


def deactivate() -> None:
    global _active
    _active = None


def active() -> Optional[Simulated]:
    """The simulation in force, if any."""
    return _active


def facts(sim: Simulated, disk_free_mb: int) -> DeviceFacts:
    """The facts such a board would report (memory: the module's nominal size)."""
    module = sim.module
    info = JetsonInfo(
        module=module.name,
        jetpack=sim.jetpack,
        compute_capability=module.compute_capability,
        memory_mb=module.memory_mb,
        soc=module.soc,
        device_class=module.device_class,
    )
    memory = module.memory_mb
    return DeviceFacts(
        agent_version=__version__,
        protocol=PROTOCOL_VERSION,
        python=sim.stack.python,
        machine=platform.machine() if platform.machine() == "aarch64" else "aarch64",
        hostname=f"{module.device_class} (simulated)",
        memory_total_mb=memory,
        memory_available_mb=int(memory * 0.8),
        swap_total_mb=0,
        disk_free_mb=disk_free_mb,
        jetson=info,
        numpy="1.24",
        tensorflow="2.16.1" if sim.stack.tftrt else None,
        tensorrt_linked=sim.stack.tensorrt if sim.stack.tftrt else None,
        tensorrt_loaded=sim.stack.tensorrt if sim.stack.tftrt else None,
    )
