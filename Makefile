# Response Portal: `make run` serves the portal with demo data, `make test` runs the tests.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8000

.PHONY: run test lint migrations-check clean worker beat bench

$(VENV)/.installed: pyproject.toml requirements.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --constraint requirements.lock --editable '.[test]'
	touch $@

run: $(VENV)/.installed
	DEBUG=true $(PY) manage.py migrate --noinput
	DEBUG=true $(PY) manage.py sync_catalog
	DEBUG=true $(PY) manage.py seed_demo
	@echo "Response Portal: http://127.0.0.1:$(PORT)/  (sign in as operator / demo-password)"
	DEBUG=true $(PY) manage.py runserver 127.0.0.1:$(PORT)

# A Celery worker and the beat scheduler, for a portal run with CELERY_BROKER_URL set (and the
# same DATABASE_URL, SECRET_KEY and executor settings as the web process).
worker: $(VENV)/.installed
	@test -n "$$CELERY_BROKER_URL" || { echo "Set CELERY_BROKER_URL (e.g. redis://127.0.0.1:6379/0): without a broker, tasks run inside the web process and need no worker." >&2; exit 1; }
	$(VENV)/bin/celery -A responseportal worker --loglevel=INFO

beat: $(VENV)/.installed
	@test -n "$$CELERY_BROKER_URL" || { echo "Set CELERY_BROKER_URL (e.g. redis://127.0.0.1:6379/0): beat hands the periodic jobs to the workers through it." >&2; exit 1; }
	$(VENV)/bin/celery -A responseportal beat --loglevel=INFO

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

migrations-check: $(VENV)/.installed
	SECRET_KEY=migrations-check $(PY) manage.py makemigrations --check --dry-run

test: lint migrations-check
	$(PY) -m pytest $(PYTEST_ARGS)

# Figures at scale in bench-results.json, on a database of its own (see the README's
# Performance section); BENCH_ARGS=--quick for a tenth of the data, as in CI.
bench: $(VENV)/.installed
	SECRET_KEY=insecure-key-for-the-benchmark $(PY) -m benchmarks $(BENCH_ARGS)

clean:
	rm -rf $(VENV) staticfiles .pytest_cache
