# Two commands from a fresh clone: `make demo` and `make test`. Needs Python 3.11+ and make.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo test test-fast lint format bench clean

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "tasktrail needs Python 3.11+"'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $@

venv: $(VENV)/.installed

## make demo: broker, worker, monitor, web server on http://127.0.0.1:8000 and demo traffic
demo: $(VENV)/.installed
	$(PY) manage.py migrate --verbosity 0
	$(PY) manage.py demo

## make test: lint, type check, then the whole suite (DATABASE_URL / REDIS_URL used when set)
test: $(VENV)/.installed lint
	$(PY) -m pytest

lint: $(VENV)/.installed
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	@# mypy's Django plugin loads the settings; give it a URL so it starts no embedded Valkey
	REDIS_URL=$${REDIS_URL:-redis://127.0.0.1:1/0} $(PY) -m mypy .

format: $(VENV)/.installed
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

## make bench: side-by-side throughput benchmarks (not part of make test)
bench: $(VENV)/.installed
	$(PY) -m bench

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
