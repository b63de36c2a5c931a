# The two front-door commands: `make demo` and `make test`. Both set up a local venv.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck setup system-deps clean bench-harness bench-push trt-bindings

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[tf,test]'
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/edge demo

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(MAKE) --no-print-directory typecheck
	$(VENV)/bin/vermin --no-tips --violations -t=3.8- --eval-annotations --backport dataclasses device_agent
	$(VENV)/bin/hadolint Dockerfile.jetson

# Types (pyproject's [tool.mypy]) and the import contracts ([tool.importlinter]).
typecheck: $(STAMP)
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

# sshd and friends: installed when root with apt-get, else a failure naming the command.
system-deps:
	bash tests/system_deps.sh

test: lint system-deps
	$(MAKE) --no-print-directory trt-bindings
	$(PY) -m pytest $(PYTEST_ARGS)

bench-harness: $(STAMP)
	TF_CPP_MIN_LOG_LEVEL=2 $(PY) benchmarks/harness_overhead.py

bench-push: $(STAMP)
	$(PY) benchmarks/push_bench.py $(BENCH_ARGS)

# The real TensorRT Python bindings of 8.6/10.3/10.13/11.4 over stub libraries, under
# $(VENV)/trt/<line>/, for tests/device_agent/backends/test_trt_bindings.py (idempotent).
trt-bindings: $(STAMP)
	VENV=$(VENV) bash tests/trt_bindings/setup.sh

clean:
	rm -rf $(VENV) build *.egg-info
