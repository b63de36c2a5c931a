"""The tensorrt backend's plan: what an engine build on this TensorRT would do, computed
without TensorRT (so `--dry-run` and `--board/--jetpack` show it on any machine).

Optimization profiles come from `--input-shape` (the job's `build_shapes`, one dict of
input -> dims per set) and the profile strategy, mapped as TF-TRT maps its strategies:

- `Range` (the default): one profile; min and max are each dimension's smallest and
  largest over the sets, opt is the largest set.
- `Optimal`: one profile per set, with min = opt = max = that set.
- `Range+Optimal`: the Range profile first, then the Optimal ones.
- `ImplicitBatchModeCompatible`: one profile; min has batch 1, opt and max are the
  largest set.

Without `--input-shape`, each input's unknown dimensions are 1 (a profile of batch 1,
the engine then runs batch 1 only; give shapes for more). The ONNX opset defaults to the
highest the TensorRT line parses that tf2onnx 1.17 writes (`MAX_OPSET`).
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence

from ..errors import AgentError
from ..protocol import ConvertOptions, TensorInfo
from ..trt_types import CALIBRATOR, QDQ, OnnxRequest, ShapeRange, TrtPlan
from .trt_api import TrtVersion, fp16_from_onnx, int8_modes, strongly_typed

#: The highest ONNX opset each TensorRT major.minor parses (onnx-tensorrt's support
#: matrix); 17 is also tf2onnx 1.17's best-tested opset, so it is the default everywhere.
MAX_OPSET = {(8, 5): 17, (8, 6): 17, (10, 0): 20, (11, 0): 21}
DEFAULT_OPSET = 17
MIN_OPSET = 9


def max_opset(version: TrtVersion) -> int:
    """The highest opset `version` parses."""
    known = [v for k, v in MAX_OPSET.items() if (version.major, version.minor) >= k]
    return known[-1] if known else DEFAULT_OPSET


def onnx_opset(version: TrtVersion, requested: Optional[int]) -> int:
    """The opset to export with: the request, checked, or the default."""
    top = max_opset(version)
    if requested is None:
        return min(DEFAULT_OPSET, top)
    if not MIN_OPSET <= requested <= top:
        raise AgentError(
            f"TensorRT {version.line} parses ONNX opsets {MIN_OPSET} to {top}, not {requested}.",
            f"Use --opset {min(DEFAULT_OPSET, top)} (or leave it out).",
        )
    return requested


def int8_mode(version: TrtVersion, requested: Optional[str], has_calib: bool) -> str:
    """The INT8 mode on this line: the request if the line has it, else its default
    (implicit calibration up to 10.x, Q/DQ on 11.x)."""
    modes = int8_modes(version)
    if requested is None:
        return modes[0]
    if requested not in modes:
        raise AgentError(
            f"TensorRT {version.line} has no {requested} INT8 (it has: {', '.join(modes)}).",
            "TensorRT 11 removed implicit calibration: use --int8-mode qdq "
            "(the host inserts Q/DQ from --calib).",
        )
    return requested


def _concrete(inputs: Sequence[TensorInfo]) -> Dict[str, List[int]]:
    return {i.name: [d if d is not None and d > 0 else 1 for d in i.shape] for i in inputs}


def profiles(
    inputs: Sequence[TensorInfo], shapes: Sequence[Dict[str, List[int]]], strategy: Optional[str]
) -> List[Dict[str, ShapeRange]]:
    """The optimization profiles for these build shapes and strategy (module docstring)."""
    sets: List[Dict[str, List[int]]] = []
    base = _concrete(inputs)
    for given in shapes or [{}]:
        full = dict(base)
        full.update({k: list(v) for k, v in given.items()})
        sets.append(full)
    for s in sets:
        for i in inputs:
            dims = s[i.name]
            if len(dims) != len(i.shape) or any(
                d is not None and d > 0 and d != g for d, g in zip(i.shape, dims)
            ):
                raise AgentError(
                    f"--input-shape {i.name}={'x'.join(map(str, dims))} does not fit the "
                    f"model's input {i.name} of shape {i.shape}.",
                    "Give the model's rank, and its fixed dimensions as they are.",
                )
    names = [i.name for i in inputs]
    largest = max(sets, key=lambda s: sum(_volume(s[n]) for n in names))
    strategy = strategy or "Range"

    def ranged(batch_one: bool) -> Dict[str, ShapeRange]:
        out = {}
        for n in names:
            lo = [min(s[n][k] for s in sets) for k in range(len(largest[n]))]
            hi = [max(s[n][k] for s in sets) for k in range(len(largest[n]))]
            if batch_one and lo:
                lo = [1] + list(hi[1:])
            out[n] = ShapeRange(min=lo, opt=list(largest[n]), max=hi)
        return out

    optimal = [{n: ShapeRange(min=s[n], opt=s[n], max=s[n]) for n in names} for s in sets]
    if strategy == "Optimal":
        return optimal
    if strategy == "Range+Optimal":
        return [ranged(False)] + optimal
    return [ranged(strategy == "ImplicitBatchModeCompatible")]


def _as_nchw(
    planned: List[Dict[str, ShapeRange]], nchw: Sequence[str]
) -> List[Dict[str, ShapeRange]]:
    """Profiles of inputs the host exports as NCHW: NHWC dims moved channels-first."""

    def move(dims: List[int]) -> List[int]:
        return [dims[0], dims[-1]] + dims[1:-1] if len(dims) >= 3 else dims

    for profile in planned:
        for name in nchw:
            r = profile.get(name)
            if r is not None:
                profile[name] = ShapeRange(min=move(r.min), opt=move(r.opt), max=move(r.max))
    return planned


def _volume(dims: Sequence[int]) -> int:
    v = 1
    for d in dims:
        v *= d
    return v


def plan_build(
    version: TrtVersion,
    options: ConvertOptions,
    inputs: Sequence[TensorInfo],
    dla_cores: Optional[int],
    workspace_bytes: Optional[int],
    has_calib: bool = False,
) -> TrtPlan:
    """The build the tensorrt backend will do on `version` (AgentError for one it cannot:
    DLA where there is none, an INT8 mode the line lacks, an opset it cannot parse)."""
    precision = options.precision.lower()
    mode = int8_mode(version, options.int8_mode, has_calib) if precision == "int8" else None
    strong = strongly_typed(version, precision, mode)
    notes: List[str] = []
    if precision == "int8" and mode == CALIBRATOR and not has_calib:
        notes.append("no --calib: calibrating on generated inputs (not representative)")
    if precision == "int8" and mode == QDQ and not has_calib:
        raise AgentError(
            "Explicit INT8 (Q/DQ) needs calibration data: the host quantizes from it.",
            "Give --calib DATA (an .npz keyed by input name).",
        )
    if options.dla_core is not None:
        if not dla_cores:
            raise AgentError(
                "This board has no DLA (Thor, the Orin Nano and the Maxwell/Pascal boards "
                "have none; TensorRT 11.0-11.3 exposes none).",
                "Drop --dla-core: the engine runs on the GPU.",
            )
        if options.dla_core >= dla_cores:
            raise AgentError(
                f"DLA core {options.dla_core} does not exist: this board has {dla_cores}.",
                f"Use --dla-core 0..{dla_cores - 1}.",
            )
        if precision == "fp32":
            raise AgentError(
                "The DLA runs FP16 and INT8 only.", "Add --precision FP16 or INT8 with --dla-core."
            )
    if options.fp32_layers and strong:
        raise AgentError(
            f"TensorRT {version.line} builds this network strongly typed, which has no "
            "per-layer precision (--fp32-layers).",
            "Leave --fp32-layers out; the host's export keeps the ONNX's own types.",
        )
    if options.optimization_level is not None and not version.at_least(8, 6):
        notes.append(f"TensorRT {version.line} has no builder optimization level (8.6+): ignored")
    if strong and precision != "fp32":
        notes.append(
            f"TensorRT {version.line}: strongly typed; {precision} comes from the host's ONNX"
        )
    onnx = OnnxRequest(
        opset=onnx_opset(version, options.onnx_opset),
        quantize=precision == "int8" and mode == QDQ,
        fp16=precision == "fp16" and fp16_from_onnx(version),
        nchw=sorted(options.nchw_inputs),
    )
    return TrtPlan(
        version=str(version),
        precision=precision,
        int8_mode=mode,
        strongly_typed=strong,
        onnx=onnx,
        workspace_bytes=workspace_bytes,
        profiles=_as_nchw(
            profiles(inputs, options.build_shapes, options.dynamic_shape_profile_strategy),
            options.nchw_inputs,
        ),
        profile_strategy=options.dynamic_shape_profile_strategy or "Range",
        optimization_level=options.optimization_level,
        dla_core=options.dla_core,
        fp32_layers=list(options.fp32_layers),
        notes=notes,
    )
