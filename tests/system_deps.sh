#!/usr/bin/env bash
# What the test suite needs from the system (not from PyPI): installed here when we are
# root with apt-get, as CI is; otherwise `make test` stops and names the install command.
# No test is skipped for a missing tool: the suite fails instead (tests/conftest.py).
set -euo pipefail

need=()
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }
have sshd || need+=(openssh-server)
{ have ssh && have ssh-keygen; } || need+=(openssh-client)
have ip || need+=(iproute2)
have gcc || need+=(gcc libc6-dev)  # the stub TensorRT libraries (tests/trt_bindings)
have chromium || need+=(chromium)  # the report in a real browser (test_report_browser.py)

[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing for the tests: ${need[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    exit 0
fi
echo "make test needs these system packages: ${need[*]}" >&2
echo "install them with: sudo apt-get install -y ${need[*]}" >&2
exit 1
