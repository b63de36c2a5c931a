"""The agent command `plan`: the device's own decisions for a convert job, nothing run.

The host sends the job spec it would submit (the model and calibration data already
pushed, so every check reads the very bytes the job will use); the device answers with
the backend it picks and why, the options resolved, the memory plan, the cache key and
whether its cache holds it, and the calibration check. The decisions are made by the
same functions the convert job uses (`convert.py`; `key_fingerprint` for the key's
fingerprint), so the key a plan reports is the key the job files its conversion under.
"""

from __future__ import annotations

import dataclasses
import tempfile
from typing import TYPE_CHECKING, Dict, List, Optional, Tuple

from .backends import get as get_backend
from .backends import select_backend
from .config import load_config
from .errors import AgentError
from .facts import collect
from .planner import fingerprint, make_plan, same_build_group
from .protocol import CalibCheck, ConvertOptions, ConvertSpec, DeviceFacts, DevicePlan, JobSpec

if TYPE_CHECKING:
    from .savedmodel_meta import Signature


def key_fingerprint(facts: DeviceFacts, backend: str) -> Dict[str, Optional[str]]:
    """The fingerprint a convert job's cache key is made from, the job's and `plan`'s both.
    For a backend that builds engines it holds the TensorRT version (loaded, else linked):
    the one in `facts` when a deep collect found it, else probed (imports TensorFlow, which
    such a build imports anyway). A native build's key holds no TensorRT version."""
    chosen = get_backend(backend)
    engines = chosen.builds_engines
    known = facts.tensorrt_loaded or facts.tensorrt_linked  # a deep collect found it
    if not engines or (known and not chosen.own_tensorrt):
        return fingerprint(facts, engines)
    # the TensorRT the backend's engines are built with: TF-TRT's, or the tensorrt module's
    # full major.minor.patch.build (plans do not travel between TensorRT builds)
    version = chosen.engine_version()
    facts = dataclasses.replace(facts, tensorrt_linked=version, tensorrt_loaded=version)
    return fingerprint(facts, engines)


def _backend(requested: str) -> Tuple[str, Optional[str], str, bool]:
    """(backend, fallback reason, why, runs). A named backend that cannot run here is still
    planned (runs=False), with the reason the job would fail, so that a dry run shows what
    it would do."""
    try:
        backend, fallback = select_backend(requested)
    except AgentError as exc:
        reason = (
            f"{requested} requested: {exc.message.rstrip('.')}; this conversion would fail there"
        )
        return requested, reason, reason, False
    if fallback:
        return backend, fallback, fallback, True
    return (
        backend,
        None,
        "requested" if requested == backend else f"{requested}: {backend} can run here",
        True,
    )


def shape_blockers(options: ConvertOptions, signature: Signature) -> List[str]:
    """Why the build shapes cannot feed this model: a name it has no input of (a recipe
    for another model), or a shape the input cannot take."""
    from .signature import concrete_shape

    names = [i.name for i in signature.inputs]
    found: List[str] = []
    for n, profile in enumerate(options.build_shapes, 1):
        unknown = sorted(set(profile) - set(names))
        if unknown:
            found.append(
                f"build shapes (profile {n}) name {', '.join(unknown)}, but the model's "
                f"inputs are {', '.join(names) or 'none'}: a recipe or --input-shape for "
                "another model"
            )
            continue
        for info in signature.inputs:
            try:
                concrete_shape(info, 1, profile)
            except AgentError as exc:
                found.append(f"build shapes (profile {n}): {exc.message}")
    return found


def plan_convert(spec: JobSpec, root: str) -> DevicePlan:
    """What a convert job of `spec` would do on this device (see the module docstring).
    Raises AgentError when the job could not start (no model, no memory to build in);
    calibration data that does not fit is reported in the plan, not raised."""
    if not isinstance(spec, ConvertSpec):
        raise AgentError(
            f"plan answers for convert jobs, not {spec.kind!r} ones.",
            "Send the spec of a convert job.",
        )
    if spec.simulate_board or spec.simulate_jetpack:
        return _simulated(spec, root)
    return _plan_with(spec, root, None)


def _plan_with(spec: ConvertSpec, root: str, simulated: Optional[DeviceFacts]) -> DevicePlan:
    from .capabilities import collect as collect_capabilities
    from .convert import ModelCache, model_identity, prepare_calibration
    from .savedmodel_meta import check_model_dir, read_signature

    options = spec.convert
    check_model_dir(spec.model)
    signature = read_signature(spec.model, options.signature_key, options.tags)
    samples = calib_digest = None
    check = None
    if spec.calib:
        try:
            with tempfile.TemporaryDirectory(prefix="plan-") as tmp:
                data, calib_digest = prepare_calibration(
                    spec, signature.inputs, tmp, lambda *a, **k: None
                )
                samples = data.samples if data is not None else None
            check = CalibCheck(samples=samples)
        except AgentError as exc:
            check = CalibCheck(error=exc.message, hint=exc.hint)
    backend, fallback, why, runs = _backend(options.backend)
    facts = simulated or collect(sysroot=load_config(root).sysroot, root_dir=root)  # as the job
    digest, nbytes = model_identity(spec.model)
    fp = key_fingerprint(facts, backend)
    plan = make_plan(
        facts,
        options,
        backend,
        spec.model,
        nbytes,
        digest,
        samples,
        fallback,
        calib_digest=calib_digest,
        fp=fp,
    )
    plan.capabilities = collect_capabilities()
    plan.blockers = ([] if runs else [why]) + shape_blockers(options, signature)
    key = plan.cache_key or digest
    hit = simulated is None and options.use_cache and ModelCache(root).lookup(key) is not None
    return DevicePlan(
        backend=backend,
        backend_reason=why,
        options=dataclasses.replace(options, backend=backend),
        plan=plan,
        cache_key=key,
        cache_hit=bool(hit),
        shareable=same_build_group(fp, fp, get_backend(backend).builds_engines),
        calibration=check,
    )


def _simulated(spec: ConvertSpec, root: str) -> DevicePlan:
    """The plan as `spec.simulate_board` on `spec.simulate_jetpack` would make it: the
    facts and probes from the module and JetPack tables (`simulate.py`); nothing here is
    probed, and nothing of the simulation outlives the answer."""
    from . import simulate
    from .facts import disk_free_mb

    if not (spec.simulate_board and spec.simulate_jetpack):
        raise AgentError(
            "A simulated plan needs both the board and the JetPack.",
            "Give --board CLASS and --jetpack X.Y together.",
        )
    sim = simulate.activate(spec.simulate_board, spec.simulate_jetpack)
    try:
        plain = dataclasses.replace(spec, simulate_board=None, simulate_jetpack=None)
        facts = simulate.facts(sim, disk_free_mb(root))
        return _plan_with(plain, root, facts)
    finally:
        simulate.deactivate()
