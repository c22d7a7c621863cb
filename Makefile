# One entry point for learners and contributors. Everything runs from the repo's
# own virtualenv (.venv), created on first use with the newest supported Python found
# (PYTHON_VERSIONS; `make PYTHON=/path/to/python3.12` picks one) from the pins in
# constraints-<its version>.txt.
#   make doctor  - check this machine before the first start: Python, disk, memory, ports, line endings,
#                  Windows/WSL; DOCKER=1 also Docker, Compose and AIRFLOW_UID. `make run` runs its fast part
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
#   make bench   - benchmarks that print key=value figures (dbt's snapshot beside the SCD2 merge: own .venv-dbt)
#   make loadtest GRADE=G4_Senior ARGS="--short" - drive the shops harder, measure, write loadtest-report/;
#                  it measures the grade's airflow_data/dags (yours); SOLUTION=1 the reference
#   make images  - regenerate images/ from a real run (manual, ~5 min; commit the result)
#   make lock    - re-resolve constraints-<version>.txt for every Python of PYTHON_VERSIONS from the names
#                  in pyproject.toml (needs each interpreter, e.g. PYENV_VERSION=3.13.0:3.12.1:3.11.7)
#   make sync-grades - write the files every grade copies from G0_Trainee (compose, env, image, dags/dwh,
#                  solutions) and the self-test's rule queries from the warehouse contract (dwh/contract.py)
#   make check ... JSON=<path> - also write the report as JSON (coursekit/checker/report.schema.json);
#                  every check keeps its report under .run/reports/<grade>/ too
#   make docs    - rewrite every figure the docs quote (<!--fact:KEY--> markers, coursekit/docs/facts.py)
#                  and every grade's Definition of done, from the code and coursekit/docs/measured.json
#                  (make sync-grades runs it too)
#   make progress - every grade's last verdict, when, in which mode, what is left (read from .run/reports/)

SHELL := /bin/bash
# The Pythons the course runs on natively, newest first: the ones Airflow supports that every pinned
# package has wheels for, each with its constraints-<version>.txt (as Airflow publishes one file per
# Python). pyproject.toml's requires-python spans them; the Docker images stay on DOCKER_PYTHON.
# tests/test_pythons.py holds the four together.
PYTHON_VERSIONS := 3.13 3.12 3.11
DOCKER_PYTHON := 3.11
# Empty: coursekit/find_python.sh picks the newest of python3.13, python3.12, python3.11, python3.
PYTHON ?=
FIND_PYTHON = coursekit/find_python.sh "$(PYTHON_VERSIONS)" $(PYTHON)
VENV := .venv
PY := $(VENV)/bin/python
GRADE ?= G0_Trainee
AIRFLOW_VERSION := 3.3.2
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: help doctor venv test test-fast test-docker lint bench lock clean run stop status reset memory airflow check images loadtest sync-grades docs progress

help:
	@grep -E '^#   ' Makefile | sed 's/^#   //'

$(VENV)/.installed: pyproject.toml $(wildcard constraints-3.*.txt)
	@test -x $(PY) || { python=$$($(FIND_PYTHON)) && echo "Creating $(VENV) with $$python ($$("$$python" -V 2>&1))" \
	  && "$$python" -m venv $(VENV); }
	@version=$$($(PY) -c 'import sys; print("%d.%d" % sys.version_info[:2])'); test -f constraints-$$version.txt || { \
	  echo "$(VENV) runs Python $$version, which the course has no constraints-$$version.txt for: make clean, then make venv"; exit 1; }
	$(PY) -m pip install --quiet --upgrade "pip>=24"
	$(PY) -m pip install --quiet -c constraints-$$($(PY) -c 'import sys; print("%d.%d" % sys.version_info[:2])').txt -e '.[dev]'
	@touch $@

# The preflight runs before .venv exists (it checks the disk .venv needs), on plain Python: with
# .venv's interpreter if there is one, else the one make would choose, else any python3 (to say
# that its version does not fit).
doctor:
	@python=$$(test -x $(PY) && echo $(PY) || $(FIND_PYTHON) 2>/dev/null || command -v python3) || { $(FIND_PYTHON); exit 1; }; \
	  "$$python" -m coursekit.doctor --grade $(GRADE) $(if $(DOCKER),--docker) $(ARGS)

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

run: venv
	$(PY) -m coursekit.doctor --fast --grade $(GRADE)
	$(if $(SOLUTION),DAGS_DIR=../solution/dags) $(PY) -m coursekit.native $@ --grade $(GRADE)

stop status reset memory: venv
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
	$(MAKE) --no-print-directory docs

docs: venv
	$(PY) -m coursekit.checker.definition --write
	$(PY) -m coursekit.docs.facts --write

bench: venv
	$(PY) -m coursekit.bench.generator_bench
	$(PY) -m coursekit.bench.scd2_bench
	$(PY) -m coursekit.bench.audit_bench --no-plans
	$(PY) -m coursekit.bench.dag_parse_bench
	$(PY) -m coursekit.bench.grading_bench

# Each version resolved on its own interpreter, as Airflow's constraints-<python>.txt are.
# LOCK_VERSIONS="3.13" re-resolves one file only.
LOCK_VERSIONS ?= $(PYTHON_VERSIONS)
lock:
	@for version in $(LOCK_VERSIONS); do \
	  python=$$(coursekit/find_python.sh "$$version" python$$version) || exit 1; \
	  echo "make lock: resolving constraints-$$version.txt with $$python"; \
	  rm -rf .lock-venv && "$$python" -m venv .lock-venv || exit 1; \
	  .lock-venv/bin/pip install --quiet --upgrade "pip>=24" || exit 1; \
	  .lock-venv/bin/pip install --quiet "apache-airflow==$(AIRFLOW_VERSION)" -e '.[dev]' || exit 1; \
	  { echo "# Every pinned version of the course on Python $$version. Generated by 'make lock'; do not edit by hand."; \
	    .lock-venv/bin/pip freeze --exclude-editable | LC_ALL=C sort -f; } > constraints-$$version.txt || exit 1; \
	done; rm -rf .lock-venv

clean:
	rm -rf $(VENV) .venv-pgadmin .venv-dbt .pytest_cache .ruff_cache *.egg-info

# make check JSON=<path>: the checker's --json, added to ARGS (also when ARGS is given on the command line).
check: override ARGS += $(if $(JSON),--json $(JSON))

progress: venv
	$(PY) -m coursekit.progress $(ARGS)
