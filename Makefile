# refine-iqa: two commands do all set-up on a fresh machine (Python 3.11 + pip, no conda).
#   make reproduce   run every numbered notebook headless with the embedded default (PROFILE=tiny)
#   make test        run the test suite (unit tests, doctests, every notebook with the smoke profile)
#
# torch: the CPU build by default. GPU users choose their own build, e.g.
#   make reproduce TORCH_SPEC="torch==2.6.0" PROFILE=paper
# (or pre-install torch in .venv and set TORCH_SPEC="" to leave it as it is).

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

.PHONY: reproduce test venv dry-run clean-results lab bench standin findings

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# Re-install when the project's dependencies change.
$(STAMP): pyproject.toml | $(PY)
	@if [ -n "$(TORCH_SPEC)" ]; then $(PY) -m pip install --quiet "$(TORCH_SPEC)"; fi
	$(PY) -m pip install --quiet -e ".[$(EXTRAS)]"
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
# make reproduce adopts it while its key matches (refine_iqa_lib/training/prebuilt.py).
standin: $(STAMP)
	$(PY) -m refine_iqa_lib.training.standin --profile $(PROFILE)

# The paper profile's plan: generation engine, every command, every missing input (NODES=2: one command per node).
dry-run: $(STAMP)
	$(PY) -m refine_iqa_lib.reproduce --profile paper --dry-run --nodes $(NODES)

lab: $(STAMP)
	$(PY) -m jupyter lab notebooks/

bench: $(STAMP)
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b --quick || exit 1; done

clean-results:
	rm -rf results/work results/executed
