"""The `tensorrt` backend: an engine built on the board from the host's ONNX export, with
TensorRT's Python API, and run with pycuda.

The artifact is a directory: `engine.plan` (the serialized engine), `engine.json` (what
it was built from and for: TensorRT version, I/O, profiles, precision) and, for implicit
INT8, `calibration.cache`, which travels with the engine so that identical boards skip
calibration. The timing cache is kept per device fingerprint under the agent root
(`trt/timing/`), so a rebuild on this board or an identical one is faster.

Every TensorRT call is in trt_api / trt_engine / trt_calib, checked against the real
bindings of each line; this module only orders them. Stdlib only at import time.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..durable import atomic_write
from ..errors import AgentError
from ..protocol import ConversionSummary, ConvertOptions, Engine, TensorInfo
from ..trt_types import CALIBRATOR, ENGINE_FILES, ParserRejection, TrtBuild, TrtPlan
from .base import Backend, BuildOutcome, BuildRequest, Capability, ModelRunner, PlanContribution

PLAN_FILE, META_FILE = ENGINE_FILES
CALIB_CACHE = "calibration.cache"
ONNX_FILE = "model.onnx"
BUILD_FILE = "build.json"  # the TrtBuild of the build that made the engine
NODES_FILE = "nodes.json"  # the ONNX graph's [name, op_type] per node, written by the host

NO_TRT_HINT = (
    "Install JetPack's TensorRT Python bindings (sudo apt-get install python3-libnvinfer) "
    "and pycuda (pip3 install pycuda), or run the agent in the Dockerfile.jetson TensorRT "
    "image; or convert with --backend native."
)


def probe() -> Capability:
    """Whether the tensorrt backend can run here: `tensorrt` imports and is a line it
    supports. pycuda (for INT8 calibration and the runner) is reported with it."""
    from ..simulate import active

    sim = active()
    if sim is not None:
        v = sim.stack.tensorrt
        return Capability("tensorrt", True, f"TensorRT {v} (simulated)", {"tensorrt": v})
    versions: Dict[str, Optional[str]] = {"tensorrt": None, "pycuda": None}
    try:
        from .trt_api import import_tensorrt, version_of

        trt = import_tensorrt()
        versions["tensorrt"] = str(getattr(trt, "__version__", "?"))
        version = version_of(trt)
    except AgentError as exc:
        return Capability("tensorrt", False, exc.message.rstrip("."), versions)
    except Exception as exc:  # a broken install: report it, never crash a probe
        return Capability(
            "tensorrt",
            False,
            f"tensorrt cannot be imported ({type(exc).__name__}: {exc})",
            versions,
        )
    versions["tensorrt"] = str(version)
    versions["pycuda"] = pycuda_version()
    extra = "" if versions["pycuda"] else "; pycuda is missing (INT8 calibration and bench need it)"
    return Capability("tensorrt", True, f"TensorRT {version}{extra}", versions)


def pycuda_version() -> Optional[str]:
    """pycuda's version, without creating a CUDA context (None: not installed)."""
    try:
        import pycuda
    except Exception:
        return None
    return str(getattr(pycuda, "VERSION_TEXT", getattr(pycuda, "__version__", "?")))


def dla_cores() -> int:
    """DLA cores as TensorRT's builder reports them (0 when it cannot tell)."""
    from ..simulate import active

    sim = active()
    if sim is not None:
        return sim.dla_cores
    try:
        from .trt_api import create_builder, import_tensorrt, make_logger
        from .trt_engine import dla_cores as count

        trt = import_tensorrt()
        return count(create_builder(trt, make_logger(trt)))
    except Exception:  # no GPU, no TensorRT: no DLA to use
        return 0


def _version() -> Any:
    from .trt_api import parse_version

    capability = probe()
    if not capability.available:
        raise AgentError(f"The tensorrt backend cannot run: {capability.reason}.", NO_TRT_HINT)
    return parse_version(capability.versions.get("tensorrt") or "")


def timing_cache_path(root: Optional[str], fingerprint: Dict[str, Optional[str]]) -> Optional[str]:
    """trt/timing/<digest of the device fingerprint>.cache under the agent root."""
    if not root:
        return None
    text = json.dumps(fingerprint, sort_keys=True)
    name = hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]
    return os.path.join(root, "trt", "timing", name + ".cache")


def calib_cache_path(root: Optional[str], key: Optional[str]) -> Optional[str]:
    """trt/calib/<key>.cache under the agent root: the calibration cache of one build key,
    kept so that a rebuild (another workspace after an out-of-memory) skips calibration."""
    if not root or not key or not all(c in "0123456789abcdef" for c in key):
        return None
    return os.path.join(root, "trt", "calib", key + ".cache")


def _seed(src: Optional[str], dst: str) -> bool:
    """Copy the file `src` to `dst` durably; False when there is none."""
    data = _read(src)
    if not data:
        return False
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    atomic_write(dst, data)
    return True


def _read(path: Optional[str]) -> Optional[bytes]:
    if not path:
        return None
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


def _onnx_file(path: Optional[str]) -> str:
    """The ONNX of a pushed export directory (or the file itself)."""
    if not path:
        raise AgentError(
            "The tensorrt backend builds from an ONNX export, and the job has none.",
            "Convert with edge convert (it exports and pushes the ONNX), not a bare job.",
        )
    candidate = os.path.join(path, ONNX_FILE) if os.path.isdir(path) else path
    if not os.path.isfile(candidate):
        raise AgentError(f"No ONNX model at {candidate}.", "Push the export again (edge convert).")
    return candidate


def _nodes(onnx_path: str) -> Optional[List[Tuple[str, str]]]:
    """The host's node list beside the ONNX (untrusted: junk gives None)."""
    raw = _read(os.path.join(os.path.dirname(onnx_path), NODES_FILE))
    try:
        data = json.loads(raw.decode("utf-8")) if raw else None
    except ValueError:
        return None
    if not isinstance(data, list):
        return None
    out = []
    for item in data:
        if not (
            isinstance(item, list) and len(item) == 2 and all(isinstance(x, str) for x in item)
        ):
            return None
        out.append((item[0][:200], item[1][:100]))
    return out


def _feeds(request: BuildRequest, nchw: Sequence[str]) -> Any:
    """The calibration batches as {input: array}, NHWC inputs moved to NCHW where the
    host exported them so."""
    import numpy as np

    names = [i.name for i in request.inputs]
    assert request.calibration is not None
    for batch in request.calibration():
        feed = {}
        for name, array in zip(names, batch):
            a = np.asarray(array)
            if name in nchw and a.ndim >= 3:
                a = np.moveaxis(a, -1, 1)
            feed[name] = np.ascontiguousarray(a)
        yield feed


class TensorrtBackend(Backend):
    """ONNX -> TensorRT engine on the board (TensorRT 8.5 to 11.x)."""

    name = "tensorrt"
    builds_engines = True
    own_tensorrt = True
    unavailable_hint = NO_TRT_HINT

    def probe(self) -> Capability:
        return probe()

    def engine_version(self) -> Optional[str]:
        return self.probe().versions.get("tensorrt")

    def calibrates(self, options: ConvertOptions) -> bool:
        if self.precision(options) != "INT8" or not options.use_calibration:
            return False
        try:
            from .trt_plan import int8_mode

            return int8_mode(_version(), options.int8_mode, True) == CALIBRATOR
        except AgentError:
            return True  # the build refuses it with the reason

    def plan_build(
        self,
        options: ConvertOptions,
        workspace_bytes: Optional[int],
        model_dir: str,
        calib_samples: Optional[int],
    ) -> TrtPlan:
        """The engine build this device would do (AgentError for one it cannot)."""
        from ..savedmodel_meta import read_signature
        from .trt_plan import plan_build

        inputs = read_signature(model_dir, options.signature_key, options.tags).inputs
        dla = dla_cores() if options.dla_core is not None else None
        return plan_build(
            _version(), options, inputs, dla, workspace_bytes, has_calib=bool(calib_samples)
        )

    def plan(
        self,
        options: ConvertOptions,
        workspace_bytes: Optional[int],
        model_dir: str,
        calib_samples: Optional[int] = None,
    ) -> PlanContribution:
        planned = self.plan_build(options, workspace_bytes, model_dir, calib_samples)
        return PlanContribution(workspace_bytes=workspace_bytes, tensorrt=planned)

    def build(
        self, request: BuildRequest, workspace_bytes: Optional[int], output_dir: str
    ) -> BuildOutcome:
        from . import trt_api
        from .trt_inspect import summarize

        started = time.time()
        plan = request.trt_plan or self.plan_build(
            request.options, workspace_bytes, request.model_dir, None
        )
        onnx_path = _onnx_file(request.onnx)
        trt = trt_api.import_tensorrt()
        version = trt_api.version_of(trt)
        if str(version) != plan.version:
            raise AgentError(
                f"The plan is for TensorRT {plan.version}, and this device has {version}.",
                "Plan again on this device (edge convert plans each device itself).",
            )
        logger = trt_api.make_logger(trt)
        builder = trt_api.create_builder(trt, logger)
        network = trt_api.create_network(trt, version, builder, plan.strongly_typed)
        nodes = _nodes(onnx_path)
        # the parser owns the network's weights: it stays referenced until the build is done
        parser, issues = trt_api.parse_onnx(trt, version, network, logger, onnx_path, nodes)
        if issues:
            raise trt_api.parse_error(issues)
        config = trt_api.create_config(builder)
        os.makedirs(output_dir)
        timing_path = timing_cache_path(request.root, request.fingerprint)
        timing = _read(timing_path)
        calib_cache = os.path.join(output_dir, CALIB_CACHE)
        kept = calib_cache_path(request.root, request.calib_key)
        calib_hit = _seed(kept, calib_cache) if plan.int8_mode == CALIBRATOR else False
        calibrator, feeder = self._calibrator(trt, request, plan, calib_cache)
        profiles: List[Dict[str, trt_api.ShapeRange]] = [
            {n: (r.min, r.opt, r.max) for n, r in p.items()} for p in plan.profiles
        ]
        settings = trt_api.BuildSettings(
            precision=plan.precision,
            int8_mode=plan.int8_mode,
            workspace_bytes=workspace_bytes,
            profiles=profiles[0] if profiles else {},
            optimization_level=plan.optimization_level,
            timing_cache=timing if timing is not None else b"",
            dla_core=plan.dla_core,
            fp32_layers=plan.fp32_layers,
            calibrator=calibrator,
        )
        try:
            for note in trt_api.configure(trt, version, builder, network, config, settings):
                request.log(note)
            for extra in profiles[1:]:
                trt_api.add_profile(builder, config, extra)
            request.log(
                f"building a TensorRT {version} engine ({plan.precision}"
                + (f", INT8 by {plan.int8_mode}" if plan.int8_mode else "")
                + f", workspace {workspace_bytes} bytes)"
            )
            serialized = trt_api.build_serialized(builder, network, config)
            if calibrator is not None:
                calibrator.check()
        finally:
            if feeder is not None:
                feeder.free()
        if kept and os.path.isfile(calib_cache) and not calib_hit:
            _seed(calib_cache, kept)
        flags = trt_api.builder_flags(trt, config)
        pools = trt_api.memory_pools(trt, config)
        new_timing = trt_api.serialized_timing_cache(config)
        if timing_path and new_timing:
            os.makedirs(os.path.dirname(timing_path), exist_ok=True)
            atomic_write(timing_path, new_timing)
        atomic_write(os.path.join(output_dir, PLAN_FILE), serialized)
        shutil.copy2(onnx_path, os.path.join(output_dir, ONNX_FILE))
        seconds = round(time.time() - started, 3)
        info = self._inspect(trt, logger, serialized)
        layers = summarize(info, plan.precision)
        rejected = [
            ParserRejection(
                node=i.name or (str(i.node) if i.node is not None else None),
                op=i.op_type,
                reason=i.message,
            )
            for i in issues  # what the parse reported (nothing, or it raised above)
        ]
        build = TrtBuild(
            version=str(version),
            precision=plan.precision,
            int8_mode=plan.int8_mode,
            workspace_bytes=workspace_bytes,
            builder_flags=flags,
            memory_pools=pools,
            profiles=plan.profiles,
            dla_core=plan.dla_core,
            timing_cache="hit" if timing else "new",
            engine_bytes=len(serialized),
            build_seconds=seconds,
            calibration_cache=None if calibrator is None else ("hit" if calib_hit else "new"),
        )
        meta = {
            "tensorrt": str(version),
            "precision": plan.precision,
            "int8_mode": plan.int8_mode,
            "dla_core": plan.dla_core,
            "nchw": list(plan.onnx.nchw) if plan.onnx else [],
            "profiles": [{n: r.to_dict() for n, r in p.items()} for p in plan.profiles],
            "inputs": [i.to_dict() for i in request.inputs],
        }
        atomic_write(os.path.join(output_dir, META_FILE), json.dumps(meta, sort_keys=True).encode())
        atomic_write(os.path.join(output_dir, BUILD_FILE), build.to_json())
        summary = ConversionSummary(
            engines=[
                Engine(
                    name=PLAN_FILE,
                    nodes=int(layers.get("layers_total") or 0),
                    device="DLA" if plan.dla_core is not None else "GPU",
                )
            ],
            layers_total=layers.get("layers_total"),
            layers_at_precision=layers.get("layers_at_precision"),
            layers_on_dla=layers.get("layers_on_dla"),
            parser_rejected=rejected,
        )
        _count_nodes(summary, nodes or [])
        del parser
        return BuildOutcome(summary, engines_built=True, artifact="engine", tensorrt=build)

    @staticmethod
    def _calibrator(trt: Any, request: BuildRequest, plan: TrtPlan, cache: str) -> Tuple[Any, Any]:
        if plan.int8_mode != CALIBRATOR:
            return None, None
        from .cuda_io import BatchFeeder
        from .trt_calib import make_calibrator
        from .trt_runner import import_pycuda

        cuda = import_pycuda()
        if request.calibration is None:
            raise AgentError("Implicit INT8 needs calibration batches.", "Give --calib DATA.")
        nchw = plan.onnx.nchw if plan.onnx else []
        batches = list(_feeds(request, nchw))
        if not batches:
            raise AgentError("The calibration data gave no batch.", "Push more samples (--calib).")
        spec = {n: (a.shape, a.dtype) for n, a in batches[0].items()}
        feeder = BatchFeeder(cuda, spec)
        batch = next(iter(batches[0].values())).shape[0]
        return make_calibrator(trt, feeder, batches, batch, cache), feeder

    @staticmethod
    def _inspect(trt: Any, logger: Any, serialized: bytes) -> str:
        from .trt_engine import deserialize, engine_information

        try:
            engine, _runtime = deserialize(trt, logger, serialized)
            return engine_information(trt, engine)
        except AgentError:
            return ""

    def load(
        self, artifact_dir: str, signature_key: str, tags: Optional[Sequence[str]] = None
    ) -> ModelRunner:
        from .trt_runner import EngineRunner

        meta = read_meta(artifact_dir)
        runner = EngineRunner(os.path.join(artifact_dir, PLAN_FILE), meta)
        nchw = [n for n in meta.get("nchw") or [] if isinstance(n, str)]
        return NhwcRunner(runner, inputs_of(meta), nchw) if nchw else runner

    def artifact_info(self, artifact_dir: str) -> Tuple[str, Optional[TrtBuild]]:
        raw = _read(os.path.join(artifact_dir, BUILD_FILE))
        try:
            return "engine", TrtBuild.from_json(raw.decode("utf-8")) if raw else None
        except (ValueError, UnicodeDecodeError):  # untrusted: a shared artifact
            return "engine", None

    def claims(self, artifact_dir: str) -> bool:
        return os.path.isfile(os.path.join(artifact_dir, PLAN_FILE)) and os.path.isfile(
            os.path.join(artifact_dir, META_FILE)
        )

    def render_summary(self, summary: ConversionSummary) -> str:
        lines = [
            f"TensorRT engine: {summary.layers_total} layers, "
            f"{summary.layers_at_precision} at the requested precision, "
            f"{summary.layers_on_dla or 0} on DLA"
        ]
        for r in summary.parser_rejected:
            lines.append(f"  parser rejected {r.node} ({r.op}): {r.reason}")
        return "\n".join(lines)


def read_meta(artifact_dir: str) -> Dict[str, Any]:
    """engine.json of an artifact (AgentError naming the fix when it is unreadable)."""
    raw = _read(os.path.join(artifact_dir, META_FILE))
    try:
        meta = json.loads(raw.decode("utf-8")) if raw else None
    except ValueError:
        meta = None
    if not isinstance(meta, dict):
        raise AgentError(
            f"{artifact_dir} has no readable {META_FILE}.",
            "Convert the model again (edge convert).",
        )
    return meta


def _count_nodes(summary: ConversionSummary, nodes: List[Tuple[str, str]]) -> None:
    histogram: Dict[str, int] = {}
    for _, op in nodes:
        histogram[op] = histogram.get(op, 0) + 1
    summary.op_histogram = histogram
    summary.ops_total = len(nodes)
    rejected = len(summary.parser_rejected)
    summary.ops_converted = max(0, len(nodes) - rejected)
    summary.percent_converted = (
        round(100.0 * summary.ops_converted / len(nodes), 1) if nodes else 100.0
    )


def inputs_of(meta: Dict[str, Any]) -> List[TensorInfo]:
    """The model inputs an artifact was built for (untrusted file: junk gives [])."""
    out = []
    for item in meta.get("inputs") or []:
        try:
            out.append(TensorInfo.from_dict(item))
        except Exception:
            return []
    return out


class NhwcRunner(ModelRunner):
    """An engine whose inputs the host exported NCHW, fed as the SavedModel's NHWC inputs
    (what bench and validate make from its signature)."""

    def __init__(self, inner: Any, inputs: List[TensorInfo], nchw: Sequence[str]) -> None:
        self.inner = inner
        self.inputs = inputs or inner.inputs
        self.outputs = inner.outputs
        self.nchw = set(nchw)

    def _feed(self, feed: Dict[str, Any]) -> Dict[str, Any]:
        import numpy as np

        return {
            k: np.ascontiguousarray(np.moveaxis(v, -1, 1)) if k in self.nchw and v.ndim >= 3 else v
            for k, v in feed.items()
        }

    def run(self, feed: Dict[str, Any]) -> Dict[str, Any]:
        return dict(self.inner.run(self._feed(feed)))

    def timed_call(self, feed: Dict[str, Any]) -> Any:
        return self.inner.timed_call(self._feed(feed))

    def configure(self, transfers: bool = True, cuda_graph: bool = False) -> List[str]:
        return list(self.inner.configure(transfers, cuda_graph))

    def close(self) -> None:
        self.inner.close()
