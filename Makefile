# Two entry points (README quickstart): `make demo` and `make test`.
# Each creates the local virtual environment .venv on first use and installs what it needs.
# torch is pinned to 2.13.0 and installed before anything that depends on it: an unpinned torch
# would pull several GB of CUDA packages on a CPU machine.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check
TORCH  := torch==2.13.0

.PHONY: demo test lint bench clean

$(VENV)/.core-installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -e .
	touch $@

$(VENV)/.dev-installed: pyproject.toml $(VENV)/.core-installed
	$(PIP) install -q $(TORCH)
	$(PIP) install -q -e '.[dev,torch,keras,lightning,plot,transformers,jax,tensorboard]' $(TORCH)
	touch $@

demo: $(VENV)/.core-installed  ## run the demo (numpy only, no ML framework)
	$(PY) -m trainctl demo

test: $(VENV)/.dev-installed  ## the whole test suite, with torch, keras and lightning
	$(PY) -m pytest

lint: $(VENV)/.dev-installed  ## ruff on everything, mypy --strict on the core and the adapters
	$(VENV)/bin/ruff check trainctl tests benchmarks examples data
	$(VENV)/bin/mypy --strict trainctl

bench: $(VENV)/.dev-installed  ## print the benchmark ratios
	for f in benchmarks/bench_*.py; do $(PY) $$f || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
