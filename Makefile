# The two commands of README: `make demo` (the main job) and `make test` (the suite).
# Both set up everything on a fresh machine: system packages, then .venv with herd installed.

VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.herd-installed
TORCH  := torch==2.11.0 torchvision==0.26.0 torchaudio==2.11.0
export OMP_NUM_THREADS ?= 2

.PHONY: setup demo test test-all bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml scripts/setup_system.sh
	bash scripts/setup_system.sh
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e '.[all,dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) scripts/demo.py

test: $(STAMP)
	$(VENV)/bin/pytest

test-all: $(STAMP)
	$(VENV)/bin/pytest -m ''

bench: $(STAMP)
	for b in benchmarks/*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf runs .pytest_cache
