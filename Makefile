# One entry point for learners and contributors. Everything runs from the repo's
# own virtualenv (.venv), created on first use from the pins in constraints.txt.
#   make run     - start a grade natively (no Docker): GRADE=G0_Trainee by default;
#                  pgAdmin4 too, at http://localhost:5050 (own .venv-pgadmin): PGADMIN=0 leaves it out;
#                  SOLUTION=1 runs the grade's reference solution (its solution/dags) instead
#   make stop    - stop the grade's native stack (data is kept)
#   make status  - what runs, on which ports
#   make reset   - stop and wipe the grade's native data, logs and staging files
#   make memory  - memory (PSS) of the running native stack, per component
#   make airflow ARGS="dags list" - the Airflow CLI against the native stack
#   make check   - check a running grade against its Definition of done (GRADE=G3_Middle);
#                  FAST=1 grades the DAG folder on a private, time-compressed copy instead
#                  (DAGS_DIR=<folder> or SOLUTION=1 grades another folder). The last line says
#                  DONE, NOT DONE, WAIT or CANNOT CHECK; make fails for all but DONE when CI is set
#                  or the output is not a terminal (on a terminal the verdict stays the last line)
#   make test    - lint + the whole test suite without Docker (what CI runs first)
#   make test-fast - lint + the tests not marked slow (the inner loop, a few minutes)
#   make test-docker - the grades' real Docker stacks (tests/docker; needs a Docker engine, 9-18 min)
#   make bench   - benchmarks that print key=value figures
#   make loadtest GRADE=G4_Senior ARGS="--short" - drive the shops harder, measure, write loadtest-report/;
#                  it measures the grade's airflow_data/dags (yours); SOLUTION=1 the reference
#   make images  - regenerate images/ from a real run (manual, ~5 min; commit the result)
#   make lock    - re-resolve constraints.txt from the names in pyproject.toml
#   make sync-grades - write the files every grade copies from G0_Trainee (compose, env, image, dags/dwh,
#                  solutions) and the self-test's rule queries from the warehouse contract (dwh/contract.py)

SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
GRADE ?= G0_Trainee
AIRFLOW_VERSION := 3.3.2
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: help venv test test-fast test-docker lint bench lock clean run stop status reset memory airflow check images loadtest sync-grades

help:
	@grep -E '^#   ' Makefile | sed 's/^#   //'

$(VENV)/.installed: pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=24"
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	@touch $@

venv: $(VENV)/.installed

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# Two workers, one test file each at a time (--dist loadfile keeps a file's shared stack together):
# most slow tests wait on processes they started, so two of them share two cores well.
test: lint
	$(PY) -m pytest -n 2 --dist loadfile --durations=30

test-fast: lint
	$(PY) -m pytest -n 2 --dist loadfile -m "not slow and not docker"

# The real `docker compose` plugin, never .venv/bin/docker-compose (its wrapper exits 0 on failure).
test-docker: venv
	$(PY) -m pytest tests/docker -m docker --timeout 1800 --durations=0 -p no:cacheprovider --basetemp=.run/pytest-docker

run stop status reset memory: venv
	$(if $(SOLUTION),DAGS_DIR=../solution/dags) $(PY) -m coursekit.native $@ --grade $(GRADE)

loadtest: venv
	$(if $(SOLUTION),DAGS_DIR=../solution/dags) $(PY) -m coursekit.loadtest --grade $(GRADE) $(ARGS)

# The verdict line is the last thing a learner sees: on a terminal, with CI unset, `make check` exits 0
# whatever the verdict, so that make adds no "make: *** [...] Error" line after it. With CI set (GitHub
# Actions sets CI=true) or the output going to a pipe or file, any verdict but DONE fails make (status 2);
# the checker's own code (1 NOT DONE, 2 CANNOT CHECK, 3 WAIT) is what `$(PY) -m coursekit.checker` returns.
CHECK = $(if $(SOLUTION),DAGS_DIR=../solution/dags) $(PY) -m coursekit.checker --grade $(GRADE) $(if $(FAST),--fast) $(ARGS)
check: venv
	$(info $(CHECK))
	@status=0; $(CHECK) || status=$$?; \
	if [ "$$status" -ne 0 ] && [ -z "$$CI" ] && [ -t 1 ]; then exit 0; fi; exit "$$status"

airflow: venv
	$(PY) -m coursekit.native airflow --grade $(GRADE) -- $(ARGS)

images: venv
	@command -v dot >/dev/null && command -v chromium >/dev/null || { \
	  echo "make images needs Graphviz and Chromium: sudo apt-get install graphviz chromium fonts-dejavu-core"; exit 1; }
	$(PY) -m coursekit.docs.images $(ARGS)

sync-grades: venv
	$(PY) -m coursekit.sync

bench: venv
	$(PY) -m coursekit.bench.generator_bench
	$(PY) -m coursekit.bench.scd2_bench
	$(PY) -m coursekit.bench.dag_parse_bench
	$(PY) -m coursekit.bench.grading_bench

lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet --upgrade "pip>=24"
	.lock-venv/bin/pip install --quiet "apache-airflow==$(AIRFLOW_VERSION)" -e '.[dev]'
	{ echo "# Every pinned version of the course. Generated by 'make lock'; do not edit by hand."; \
	  .lock-venv/bin/pip freeze --exclude-editable | LC_ALL=C sort -f; } > constraints.txt
	rm -rf .lock-venv

clean:
	rm -rf $(VENV) .venv-pgadmin .pytest_cache .ruff_cache *.egg-info
