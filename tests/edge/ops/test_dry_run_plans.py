"""Dry-run plans for every recipe on every board class bind to the real converter."""

from __future__ import annotations

import inspect

import pytest

from device_agent.errors import AgentError
from device_agent.jetson import MODULES
from device_agent.planner import make_plan
from device_agent.protocol import DeviceFacts, JetsonInfo
from edge.core.errors import RecipeError
from edge.recipes.loader import list_recipes
from edge.recipes.resolve import resolve


def board_facts(module) -> DeviceFacts:  # noqa: ANN001 - a jetson.Module
    total = module.memory_mb
    return DeviceFacts(
        agent_version="0",
        protocol=1,
        python="3.8.10",
        machine="aarch64",
        hostname="b",
        memory_total_mb=total,
        memory_available_mb=int(total * 0.7),
        swap_total_mb=0,
        disk_free_mb=20000,
        tensorflow="2.11.0",
        tensorrt_enabled=True,
        tensorrt_loaded="8.5.2",
        jetson=JetsonInfo(
            module=module.name,
            l4t="35.3.1",
            jetpack="5.1.1",
            compute_capability=module.compute_capability,
            memory_mb=total,
            soc=module.soc,
            device_class=module.device_class,
        ),
    )


@pytest.mark.parametrize("recipe", list_recipes(), ids=lambda r: r.name)
def test_every_recipe_plans_on_every_board(recipe) -> None:  # noqa: ANN001
    from tensorflow.python.compiler.tensorrt.trt_convert import TrtGraphConverterV2

    signature = inspect.signature(TrtGraphConverterV2.__init__)
    planned_classes: set[str] = set()
    for module in MODULES:
        try:
            options = resolve(recipe, module.device_class).options
        except RecipeError as exc:  # e.g. INT8 asked of a board without INT8: refused
            assert module.device_class in exc.message or "INT8" in exc.message
            continue
        facts = board_facts(module)
        try:
            plan = make_plan(facts, options, "tftrt", "/m", 100 << 20, "0" * 64, 512)
        except AgentError as exc:  # a 100 MB model on a 2 GB board: refused with remedies
            assert "does not fit" in exc.message and "swap" in exc.message
            assert module.memory_mb <= 4096
            continue
        signature.bind(None, **plan.converter_kwargs)
        assert plan.converter_kwargs["max_workspace_size_bytes"] == plan.workspace_bytes
        assert plan.workspace_bytes < module.memory_mb << 20
        assert plan.cache_key and plan.fingerprint["module"] == module.device_class
        planned_classes.add(module.device_class)
    assert {"nano-4gb", "xavier-nx-8gb", "orin-nano-8gb", "agx-orin-64gb"} <= planned_classes
