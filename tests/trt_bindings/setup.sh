#!/usr/bin/env bash
# The real TensorRT Python bindings, one directory per TensorRT line, for
# tests/device_agent/backends/test_trt_bindings.py. Idempotent: a line whose stamp exists
# is skipped, so a warm run takes well under a second.
#
#   .venv/trt/<line>/          pip install --no-deps --target (never the venv itself)
#   .venv/trt/<line>/tensorrt/ a shim so that `import tensorrt` is the bindings module
#   .venv/trt/<line>/lib/      stub.c compiled under each soname the wheel links against
#
# The test runs each line in a subprocess with PYTHONPATH=.venv/trt/<line> and
# LD_LIBRARY_PATH=.venv/trt/<line>/lib (see trt_env in the test).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="${VENV:-$root/.venv}"
py="$venv/bin/python"
dest="$venv/trt"
CC="${CC:-gcc}"

# line  pip requirement                      sonames (major) and extra libs
lines=(
  "8.6   tensorrt-bindings==8.6.1             8  nvparsers"
  "10.3  tensorrt-cu12-bindings==10.3.0       10"
  "10.13 tensorrt-cu13-bindings==10.13.3.9    10"
  "11.4  tensorrt-cu13-bindings==11.4.0.106   11"
)

for entry in "${lines[@]}"; do
  read -r line req major extra <<<"$entry"
  dir="$dest/$line"
  stamp="$dir/.ready-$req"
  [ -f "$stamp" ] && continue
  echo "trt-bindings: $line ($req)"
  rm -rf "$dir"
  mkdir -p "$dir/lib" "$dir/tensorrt"
  "$py" -m pip install --quiet --disable-pip-version-check --no-deps --target "$dir" "$req"
  cat >"$dir/tensorrt/__init__.py" <<'PY'
# `import tensorrt` as on a board: the bindings wheel installs `tensorrt_bindings`.
import sys

import tensorrt_bindings

sys.modules[__name__] = tensorrt_bindings
PY
  for lib in nvinfer nvinfer_plugin nvonnxparser ${extra:-}; do
    so="lib$lib.so.$major"
    "$CC" -shared -fPIC -O0 -w -Wl,-soname,"$so" -o "$dir/lib/$so" "$here/stub.c"
  done
  touch "$stamp"
done
