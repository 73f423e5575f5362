# Two entry points: `make demo` runs one order end to end on the embedded defaults,
# `make test` runs the whole suite. Both install what they need first, and are safe to rerun.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install install-gpu system-packages demo test bench mutation clean

$(STAMP): pyproject.toml constraints.txt package.json package-lock.json
	test -x $(PY) || python3 -m venv $(VENV)
	# The CPU wheel first: a bare `torch` requirement would pull a multi-GB CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -c constraints.txt -e ".[test,devnet]"
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

install: $(STAMP)

# A GPU worker host: the same pinned environment with PyTorch's CUDA build, from PyTorch's own index
# (a pip extra cannot name the index a package comes from). Needs the NVIDIA driver, not the toolkit.
TORCH_CUDA ?= cu128
install-gpu:
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q torch==2.13.0+$(TORCH_CUDA) --extra-index-url https://download.pytorch.org/whl/$(TORCH_CUDA)
	grep -v '^torch==' constraints.txt > $(VENV)/constraints-gpu.txt  # every pin but the CPU build's
	$(PY) -m pip install -q -c $(VENV)/constraints-gpu.txt -e .
	$(PY) -c "import torch; assert torch.cuda.is_available(), 'PyTorch sees no GPU: check the driver (nvidia-smi)'"

demo: install
	$(VENV)/bin/bahen demo

# Debian's packages the tests and benchmarks start: Chromium, headless, for the browser tests, and
# PostgreSQL, the database of the devnet's Prefect server as in a production deployment.
MISSING := $(strip $(if $(shell command -v chromium),,chromium) \
	$(if $(shell command -v postgres)$(wildcard /usr/lib/postgresql/*/bin/postgres),,postgresql))

system-packages:
	$(if $(MISSING),apt-get update -qq && apt-get install -y -qq --no-install-recommends $(MISSING))

# Two pytest processes (pytest-xdist), each taking whole modules: the devnet's orders mostly wait on its
# parties' processes while the other runs the rest. `.venv/bin/pytest` alone runs the same tests in one.
test: install system-packages
	$(PY) -m pytest -n 2

bench: install system-packages
	$(VENV)/bin/bahen bench all

# Mutation testing of the security-critical modules ([tool.mutmut] in pyproject.toml), then the score
# per module; all of them take hours on 2 cores, MUTANTS='"privacy.*" "proof.wasp.*"' runs a subset
# (docs/testing.md has the figures and the subsets they were measured on).
MUTANTS ?=
mutation: install
	$(PY) -m pip install -q -c constraints.txt -e ".[mutation]"
	$(VENV)/bin/mutmut run $(MUTANTS)
	$(VENV)/bin/mutmut results --all true | $(PY) -m tests.mutation_scores

clean:
	rm -rf $(VENV) node_modules .bahen
