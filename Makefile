# The README's two commands: `make demo` (the main job) and `make test` (the tests). Both bootstrap .venv.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.etr-installed

.PHONY: install demo test test-fast clean

install: $(STAMP)

# torch first (a CPU build; a plain requirement would pull GBs of CUDA wheels), then verl + etr-verl pinned to it
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -c constraints.txt -e ".[test,demo]"
	touch $(STAMP)

demo: $(STAMP)
	RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 $(PY) -m etr_verl.demo

test: $(STAMP)
	RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 $(PY) -m pytest tests

# everything but the slow tests (Ray, verl's own suite)
test-fast: $(STAMP)
	RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 $(PY) -m pytest tests -m "not slow"

clean:
	rm -rf $(VENV) .cache .hypothesis
