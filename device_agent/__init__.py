"""jetson-edge device agent: runs on the device's own Python (3.8+, stdlib + numpy).

The host (`edge`) may import only the shared part, modules that need nothing but the
standard library and each other (import-linter checks both, `make lint`):

- `device_agent` itself (`__version__`);
- `protocol`: the wire types, job specs, events and results, and `wire`, their JSON
  codec (which checks every field a peer sends); `protocol_core` holds the few that the
  quick commands (info, push) need, so those start fast, and `protocol` re-exports them;
- `errors`: `AgentError`, which the host's errors wrap;
- `manifest`: build, check, decode and digest a manifest (`build_manifest`,
  `validate_manifest`, `tree_digest`, `file_sha256`, `gaps`); the store that keeps the
  pushed trees (`store`, its layout and `BlobStore`) is the agent's own;
- `durable`: atomic writes and directory fsyncs;
- `savedmodel_meta` and `dtypes`: a SavedModel's signatures, read without TensorFlow;
- `jetson`: the table of Jetson modules (recipes name device classes from it), and
  `jetpack`: what each JetPack ships (TensorRT, CUDA, Python, TF-TRT);
- `trt_types`: the wire types of the tensorrt backend (capabilities, plan, build).

Everything else is device-only (jobs, planning, backends, calibration, serving): the host
asks the agent for it with an agent command instead of importing it.
"""

from typing import Optional

__version__ = "0.1.0"

# The zipapp's path when the agent runs from one (bootstrap sets it; re-runs use it).
ZIPAPP: Optional[str] = None
