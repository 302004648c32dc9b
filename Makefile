# Response Portal: `make run` serves the portal with demo data, `make test` runs the tests.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8000

.PHONY: run test lint migrations-check clean

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

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

migrations-check: $(VENV)/.installed
	SECRET_KEY=migrations-check $(PY) manage.py makemigrations --check --dry-run

test: lint migrations-check
	$(PY) -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) staticfiles .pytest_cache
