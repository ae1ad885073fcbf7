# Two commands from a fresh clone: `make demo` and `make test`. Needs Python 3.11+ and make.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo test test-reliability fuzz lint format audit lock bench dist clean

# Installs are constrained to requirements.lock, the dependency set `make audit` checks.
$(VENV)/.installed: pyproject.toml workers/client/pyproject.toml requirements.lock
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "tasktrail needs Python 3.11+"'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c requirements.lock -e ./workers/client -e '.[dev]'
	@touch $@

$(VENV)/.bench-installed: $(VENV)/.installed
	$(PY) -m pip install --quiet -c requirements.lock -e ./workers/client -e '.[dev,bench]'
	@touch $@

venv: $(VENV)/.installed

## make demo: broker, worker, monitor, web server on http://127.0.0.1:8000 and demo traffic
demo: $(VENV)/.installed
	$(PY) manage.py migrate --verbosity 0
	$(PY) manage.py demo

## make test: lint, type check, then the whole suite (DATABASE_URL / REDIS_URL used when set)
test: $(VENV)/.installed lint
	$(PY) -m pytest

## make test-reliability: the long fault and load variants (minutes; the short ones run in make test)
test-reliability: $(VENV)/.installed
	$(PY) -m pytest -m reliability

## make fuzz: the property tests with fresh random examples, round after round, until a round
## ends after FUZZ_SECONDS (default 600) or one fails (it prints the @reproduce_failure blob; keep
## the input as an @example on the test). FUZZ_EXAMPLES (default 1000) sizes a round: each test runs
## FUZZ_EXAMPLES/100 times the examples it runs in make test, which always runs the same ones.
FUZZ_SECONDS ?= 600
FUZZ_EXAMPLES ?= 1000
fuzz: $(VENV)/.installed
	@end=$$(( $$(date +%s) + $(FUZZ_SECONDS) )); round=1; \
	while :; do \
		echo "fuzz round $$round"; \
		FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(PY) -m pytest -q -x -m hypothesis \
			--hypothesis-profile=fuzz --hypothesis-show-statistics || exit 1; \
		[ $$(date +%s) -lt $$end ] || break; round=$$((round + 1)); \
	done

lint: $(VENV)/.installed
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	@# mypy's Django plugin loads the settings; give it a URL so it starts no embedded Valkey
	REDIS_URL=$${REDIS_URL:-redis://127.0.0.1:1/0} $(PY) -m mypy .

format: $(VENV)/.installed
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

## make audit: known vulnerabilities in the locked dependency set (pip-audit)
audit: $(VENV)/.installed
	$(PY) .ci/audit.py requirements.lock

## make lock: rewrite requirements.lock from a fresh resolve of pyproject.toml's ranges
lock:
	rm -rf var/lock-venv
	$(PYTHON) -m venv var/lock-venv
	var/lock-venv/bin/pip install --quiet -e ./workers/client -e '.[dev,bench]'
	{ sed -n 1,2p requirements.lock; var/lock-venv/bin/pip freeze --exclude-editable; } > requirements.lock.new
	mv requirements.lock.new requirements.lock
	rm -rf var/lock-venv

## make bench: side-by-side benchmarks against Flower and django-celery-results (not in make test);
## BENCH_ARGS="--quick" for a smoke run, "--only scaling" for one section (python -m bench --help)
bench: $(VENV)/.bench-installed
	$(PY) -m bench $(BENCH_ARGS)

## make dist: the two wheels in dist/: the client a shop installs (tasktrail) and the service
## (tasktrail-server, the `tasktrail` command); see the README's "Add tasktrail to an existing Celery project"
dist: $(VENV)/.installed
	rm -rf dist
	$(PY) -m pip wheel --quiet --no-deps --wheel-dir dist ./workers/client .
	@ls dist

clean:
	rm -rf $(VENV) var dist .pytest_cache .mypy_cache .ruff_cache
