"""`edge convert MODEL --to DEVICES`: TF-TRT (or native) conversion on each device."""

from __future__ import annotations

import dataclasses
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from device_agent.protocol import ConvertOptions, DeviceFacts
from edge.cli._options import parse_input_shapes
from edge.cli._utils import (
    JsonOpt,
    TargetsOpt,
    console,
    err_console,
    finish_run,
    print_json,
    progress_sink,
)
from edge.core.errors import EdgeError
from edge.core.untrusted import safe_text
from edge.fleet.devices import resolve_targets
from edge.ops import convert as conversion
from edge.ops.convert import ConvertRequest
from edge.recipes.loader import load_recipe
from edge.recipes.resolve import resolve
from edge.recipes.schema import parse_size
from edge.views.tables import plan_tables, print_failures


class Backend(str, Enum):
    auto = "auto"
    tftrt = "tftrt"
    tensorrt = "tensorrt"
    native = "native"


class Int8Mode(str, Enum):
    calibrator = "calibrator"
    qdq = "qdq"


class Precision(str, Enum):
    FP32 = "FP32"
    FP16 = "FP16"
    INT8 = "INT8"


class Strategy(str, Enum):
    Range = "Range"
    Optimal = "Optimal"
    RangeOptimal = "Range+Optimal"
    ImplicitBatchModeCompatible = "ImplicitBatchModeCompatible"


def convert(
    model: Annotated[Path, typer.Argument(help="SavedModel directory on this machine.")],
    to: TargetsOpt = "local",
    recipe: Annotated[Optional[str], typer.Option(help="Recipe name or YAML path.")] = None,
    backend: Annotated[
        Optional[Backend],
        typer.Option(
            help="auto: tftrt where TF-TRT loads, else tensorrt (ONNX -> engine) where "
            "TensorRT's Python module imports, else native; decided on each device."
        ),
    ] = None,
    precision: Annotated[Optional[Precision], typer.Option(case_sensitive=False)] = None,
    output: Annotated[
        Optional[str],
        typer.Option(help="Output directory on the device (default: the job's artifacts)."),
    ] = None,
    workspace: Annotated[
        Optional[str], typer.Option(help="TensorRT workspace: auto or a size like 512MiB.")
    ] = None,
    min_segment_size: Annotated[
        Optional[str],
        typer.Option(
            help="minimum_segment_size, or auto: sweep sizes for the fewest engines within "
            "--max-engines that keep the most ops converted."
        ),
    ] = None,
    max_cached_engines: Annotated[
        Optional[int], typer.Option(help="maximum_cached_engines.")
    ] = None,
    max_engines: Annotated[Optional[int], typer.Option(help="TF_TRT_MAX_ALLOWED_ENGINES.")] = None,
    op_denylist: Annotated[
        Optional[str], typer.Option(help="TF_TRT_OP_DENYLIST, e.g. Shape,Reshape.")
    ] = None,
    input_shape: Annotated[
        Optional[list[str]],
        typer.Option(
            help="NAME=DIMS for build(); repeat per input; a repeated name starts a new profile."
        ),
    ] = None,
    dynamic_shape: Annotated[
        Optional[bool], typer.Option("--dynamic-shape/--static-shape", help="use_dynamic_shape.")
    ] = None,
    profile_strategy: Annotated[
        Optional[Strategy], typer.Option(help="dynamic_shape_profile_strategy.")
    ] = None,
    build: Annotated[
        Optional[bool],
        typer.Option("--build/--no-build", help="Build engines on the device before save()."),
    ] = None,
    allow_build_at_runtime: Annotated[
        Optional[bool], typer.Option("--allow-build-at-runtime/--no-build-at-runtime")
    ] = None,
    experimental: Annotated[
        Optional[list[str]], typer.Option(help="TF_TRT_EXPERIMENTAL_FEATURES entry (repeatable).")
    ] = None,
    signature: Annotated[Optional[str], typer.Option(help="Signature key.")] = None,
    calib: Annotated[
        Optional[Path],
        typer.Option(
            help="INT8 calibration data: an .npz keyed by input name, or a directory of .npy."
        ),
    ] = None,
    calib_batch_size: Annotated[
        Optional[int], typer.Option(help="Samples per calibration batch.")
    ] = None,
    calib_batches: Annotated[
        Optional[int], typer.Option(help="Calibration batches to run.")
    ] = None,
    validate: Annotated[
        bool,
        typer.Option(
            "--validate", help="Compare the converted model with the input model on the device."
        ),
    ] = False,
    atol: Annotated[Optional[float], typer.Option(help="Validation absolute tolerance.")] = None,
    rtol: Annotated[Optional[float], typer.Option(help="Validation relative tolerance.")] = None,
    share_engines: Annotated[
        bool,
        typer.Option(
            "--share-engines/--no-share-engines",
            help="Build once per group of identical devices and send the engines to the rest.",
        ),
    ] = True,
    cache: Annotated[
        bool,
        typer.Option(
            "--cache/--no-cache", help="Reuse a conversion with the same model, options and device."
        ),
    ] = True,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Resolve and print each device's plan; convert nothing."),
    ] = False,
    int8_mode: Annotated[
        Optional[Int8Mode],
        typer.Option(
            help="tensorrt INT8: calibrator (implicit, TensorRT 8.5-10) or qdq (the host "
            "inserts Q/DQ; TensorRT 11's only mode). Default: the device's."
        ),
    ] = None,
    dla_core: Annotated[
        Optional[int], typer.Option(help="tensorrt: build for this DLA core, GPU fallback.")
    ] = None,
    fp32_layers: Annotated[
        Optional[str], typer.Option(help="tensorrt: layer names pinned to FP32, comma-separated.")
    ] = None,
    opt_level: Annotated[
        Optional[int], typer.Option(help="tensorrt: builder optimization level 0-5 (8.6+).")
    ] = None,
    opset: Annotated[
        Optional[int], typer.Option(help="tensorrt: ONNX opset (default: the device's best).")
    ] = None,
    nchw: Annotated[
        Optional[list[str]], typer.Option(help="tensorrt: export this input NCHW (repeatable).")
    ] = None,
    max_accuracy_drop: Annotated[
        Optional[float],
        typer.Option(help="tensorrt INT8 (qdq): refuse a host Q/DQ model whose top-1 drops more."),
    ] = None,
    board: Annotated[
        Optional[str],
        typer.Option(help="With --dry-run: plan as this device class (e.g. orin-nano-8gb)."),
    ] = None,
    jetpack: Annotated[
        Optional[str], typer.Option(help="With --dry-run and --board: plan as this JetPack.")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Convert a SavedModel on each device and print the conversion summary."""
    devices = resolve_targets(to)
    loaded = load_recipe(recipe) if recipe else None
    flags: dict[str, Any] = {
        "backend": backend.value if backend else None,
        "precision": precision.value if precision else None,
        "minimum_segment_size": None,  # set below (an integer, or auto)
        "maximum_cached_engines": max_cached_engines,
        "max_engines": max_engines,
        "op_denylist": [o.strip() for o in op_denylist.split(",") if o.strip()]
        if op_denylist
        else None,
        "build_shapes": parse_input_shapes(input_shape) if input_shape else None,
        "use_dynamic_shape": dynamic_shape,
        "dynamic_shape_profile_strategy": profile_strategy.value if profile_strategy else None,
        "build": build,
        "allow_build_at_runtime": allow_build_at_runtime,
        "experimental_features": experimental,
        "signature_key": signature,
        "calibration_batch_size": calib_batch_size,
        "calibration_batches": calib_batches,
        "run_validation": True if validate else None,
        "atol": atol,
        "rtol": rtol,
        "use_cache": None if cache else False,
        "int8_mode": int8_mode.value if int8_mode else None,
        "dla_core": dla_core,
        "fp32_layers": [n.strip() for n in fp32_layers.split(",") if n.strip()]
        if fp32_layers
        else None,
        "optimization_level": opt_level,
        "onnx_opset": opset,
        "nchw_inputs": nchw,
    }
    if (board or jetpack) and not (board and jetpack and dry_run):
        raise EdgeError(
            "--board and --jetpack plan as a board you do not have: they go together, "
            "with --dry-run.",
            "Add the missing one, e.g. --dry-run --board orin-nano-8gb --jetpack 6.2",
        )
    if min_segment_size == "auto":
        flags["minimum_segment_size_auto"] = True
    elif min_segment_size is not None:
        try:
            flags["minimum_segment_size"] = int(min_segment_size)
        except ValueError:
            raise EdgeError(
                f"Bad --min-segment-size {min_segment_size!r}.", "Give an integer (e.g. 3) or auto."
            ) from None
    if workspace is not None and workspace != "auto":
        flags["max_workspace_size_bytes"] = parse_size(workspace)
    if profile_strategy is not None and dynamic_shape is None:
        flags["use_dynamic_shape"] = True

    def options_for_class(device_class: str | None) -> ConvertOptions:
        """The recipe (for that device class, if any) with the flags on top."""
        base = resolve(loaded, device_class).options if loaded is not None else ConvertOptions()
        given = {k: v for k, v in flags.items() if v is not None}
        return dataclasses.replace(base, **given)

    def options_for(facts: DeviceFacts) -> ConvertOptions:
        return options_for_class(facts.jetson.device_class if facts.jetson else None)

    # Check the flags once up front so a bad combination fails before any device work.
    defaults = options_for_class(None)
    try:
        defaults.validate()
    except ValueError as exc:
        raise EdgeError(
            f"Invalid conversion options: {exc}",
            "See `edge convert --help` for the accepted values.",
        ) from exc

    request = ConvertRequest(
        model,
        options_for,
        output=output,
        calib=calib,
        share_engines=share_engines,
        on_event=progress_sink(json_out),
        defaults=defaults,
        max_accuracy_drop=max_accuracy_drop,
        simulate_board=board,
        simulate_jetpack=jetpack,
    )
    if dry_run:
        plans = conversion.dry_run(request, devices)
        if json_out:
            print_json([r.to_dict() for r in plans.results])
        else:
            console.print(plan_tables(plans.results))
            print_failures(err_console, plans.results)
        # the device's own verdict on its plan: the host reads it, never second-guesses it
        blocked = [(r.device, b) for r in plans.results if r.plan for b in r.plan.blockers]
        for device, why in blocked:
            err_console.print(
                f"[bold red]{safe_text(device)}: cannot work:[/] {safe_text(why)}",
                highlight=False,
            )
        if not plans.ok or blocked:
            raise typer.Exit(1)
        return
    run = conversion.convert(request, devices)
    finish_run("convert", run, model, recipe, json_out)
