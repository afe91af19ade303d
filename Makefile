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

test: $(VENV)/.dev-installed  ## the whole test suite (Keras on torch), then Keras' tests on jax
	$(PY) -m pytest
	@# Keras' backend is fixed per process: a second run puts the Keras drop-ins, the
	@# ControllerCallback (parity, resume) and Keras' own callback tests on the JAX backend.
	@echo "== the Keras adapter's tests again, with KERAS_BACKEND=jax =="
	KERAS_BACKEND=jax $(PY) -m pytest tests/test_adapter_keras*.py tests/test_keras_*.py \
		tests/test_checkpoint_parity.py::test_keras_epoch_saves_match \
		tests/test_checkpoint_parity.py::test_keras_batch_saves_match_every_n_steps

lint: $(VENV)/.dev-installed  ## ruff on everything, mypy --strict on the core and the adapters
	$(VENV)/bin/ruff check trainctl tests benchmarks examples data docs
	$(VENV)/bin/mypy --strict trainctl

bench: $(VENV)/.dev-installed  ## print the benchmark ratios
	for f in benchmarks/bench_*.py; do $(PY) $$f || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
