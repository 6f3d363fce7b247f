# refine-iqa: two commands do all set-up on a fresh machine (Python 3.11 + pip, no conda).
#   make reproduce   run every numbered notebook headless with the embedded default (PROFILE=tiny)
#   make test        run the test suite (unit tests, doctests, every notebook with the smoke profile)
#
# torch: the CPU build by default. GPU users choose their own build, e.g.
#   make reproduce TORCH_SPEC="torch==2.6.0" PROFILE=paper
# (or pre-install torch in .venv and set TORCH_SPEC="" to leave it as it is).
# Every other package is pinned by requirements-lock.txt (pip constraints); `make lock` regenerates it.

PYTHON     ?= python3
VENV       ?= .venv
TORCH_SPEC ?= torch==2.13.0
PROFILE    ?= tiny
# machines the paper-scale training runs on (make dry-run NODES=2)
NODES      ?= 1
# pytest-xdist workers for make test (one per core; the smoke notebooks stay together on one)
TEST_WORKERS ?= 2
EXTRAS     ?= test
PY         := $(VENV)/bin/python
STAMP      := $(VENV)/.installed-$(EXTRAS)
LOCK       := requirements-lock.txt

.PHONY: reproduce test venv dry-run clean-results lab bench standin findings lock

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# Re-install when the project's dependencies or the lock change; the lock pins every package but
# torch (and what torch itself requires), which TORCH_SPEC chooses.
$(STAMP): pyproject.toml $(LOCK) | $(PY)
	@if [ -n "$(TORCH_SPEC)" ]; then $(PY) -m pip install --quiet "$(TORCH_SPEC)"; fi
	$(PY) -m pip install --quiet -c $(LOCK) -e ".[$(EXTRAS)]"
	@touch $(STAMP)

venv: $(STAMP)

reproduce: $(STAMP)
	$(PY) -m refine_iqa_lib.reproduce --profile $(PROFILE)

test: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadgroup

# Every training the claims need for 3 seeds (the base shared; seed 0 = make reproduce's runs) and
# the claims over seeds in results/findings/ (refine_iqa_lib/findings.py).
findings: $(STAMP)
	$(PY) -m refine_iqa_lib.findings --profile $(PROFILE)

# Re-train the stand-in's pre-training warm-up and write it to warmup.prebuilt (commit the folder);
# make reproduce adopts it while its key matches (refine_iqa_lib/standin/prebuilt.py).
standin: $(STAMP)
	$(PY) -m refine_iqa_lib.standin --profile $(PROFILE)

# The paper profile's plan: generation engine, every command, every missing input (NODES=2: one command per node).
dry-run: $(STAMP)
	$(PY) -m refine_iqa_lib.reproduce --profile paper --dry-run --nodes $(NODES)

lab: $(STAMP)
	$(PY) -m jupyter lab notebooks/

bench: $(STAMP)
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b --quick || exit 1; done

# Regenerate requirements-lock.txt from a venv created from nothing (then regenerate and commit the
# committed outputs with it: make standin, make reproduce, make findings).
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet --upgrade pip
	@if [ -n "$(TORCH_SPEC)" ]; then .lock-venv/bin/python -m pip install --quiet "$(TORCH_SPEC)"; fi
	.lock-venv/bin/python -m pip install --quiet -e ".[$(EXTRAS)]"
	.lock-venv/bin/python -m refine_iqa_lib.environment lock
	rm -rf .lock-venv

# keeps the committed executed notebooks of the tiny run (results/executed/tiny/)
clean-results:
	rm -rf results/work $(filter-out results/executed/tiny,$(wildcard results/executed/*))
