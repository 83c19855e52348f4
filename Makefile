# One target per habit. On a fresh machine `make dev` and `make test` do all the set-up.
VENV ?= .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed


.PHONY: install dev test lint typecheck format screenshots-admin bench bench-callbacks bench-clock bench-export bench-api bench-audit bench-web-cpu bench-email profile-create profile-email

$(INSTALLED): pyproject.toml sdk/python/pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -qq --upgrade pip
	$(PY) -m pip install -qq -e '.[dev]'
	$(PY) -m pip install -qq -e 'sdk/python[langgraph,langchain,openai-agents,mcp]'
	touch $@

install: $(INSTALLED)

# Web, Celery worker and beat on the embedded default (SQLite + file-system broker under var/).
# Ctrl-C stops all three; honcho then exits 130, which is how a stop is meant to end.
dev: export DEBUG = 1
dev: export CALLBACK_ALLOW_PRIVATE = 1
dev: install
	@$(PY) manage.py migrate --noinput -v 0
	@$(PY) manage.py dev_setup
	@PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/honcho -f Procfile.dev start || [ $$? -eq 130 ]

test: install
	$(VENV)/bin/pytest

lint: install typecheck
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

# mypy with django-stubs on the modules listed in pyproject.toml's [tool.mypy] `files`.
typecheck: install
	$(VENV)/bin/mypy

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# The admin screenshots docs/ADMIN.md shows (docs/screenshots/admin-*.png), taken by the browser
# test that checks those pages. Needs what the tests need (PostgreSQL, Redis) and /usr/bin/chromium.
screenshots-admin: install
	SCREENSHOTS_DIR=docs/screenshots $(VENV)/bin/pytest -q -p no:cacheprovider tests/test_browser_admin.py

# Figures, not pass/fail: needs PostgreSQL and Redis on 127.0.0.1 (as CI has), and hey and
# pgbench for the API benchmark. About ten minutes; docs/BENCHMARKS.md keeps the results.
bench: install
	$(PY) bench/callbacks_longpoll.py
	$(PY) bench/clock.py
	$(PY) bench/audit_export.py
	$(PY) bench/api_throughput.py
	$(PY) bench/email_throughput.py
	$(PY) bench/audit_contention.py
	$(PY) bench/audit_sealing.py
	$(PY) bench/web_cpu.py

bench-callbacks: install
	$(PY) bench/callbacks_longpoll.py

# POST /decisions against issue 14's targets: 8 clients beside pgbench, one client, a fixed
# 100/s, 64 clients, a policy's auto-approval, 2 web processes against 1.
bench-api: install
	$(PY) bench/api_throughput.py

# One email per create at a fixed 100 creates/s: does the outbox keep up, worker CPU per email.
bench-email: install
	$(PY) bench/email_throughput.py

# Where the CPU goes, in one process with cProfile: a create (add ARGS=--policy for one a
# policy approves), an email send.
profile-create: install
	$(PY) bench/profile_create.py $(ARGS)

profile-email: install
	$(PY) bench/profile_email.py

# Web CPU per create (issue 14): broker/asgi.py under uvicorn, against everything through
# Django's ASGI handler and gunicorn where it is installed. CPU time, not wall time, so it holds
# on a busy machine.
bench-web-cpu: install
	$(PY) bench/web_cpu.py

# The clock keeping time with 100 000 decisions pending (issue 5): lateness and sweep query time.
bench-clock: install
	$(PY) bench/clock.py

# Export of 1 000 000 audit rows: rows/s and peak web RSS (issue 7). PostgreSQL and Redis, as bench.
bench-export: install
	$(PY) bench/audit_export.py

# The audit trail without an organization lock (issue 13): one organization's creates vs eight
# at the database level, and sealing lateness at 100 000 events a minute.
bench-audit: install
	$(PY) bench/audit_contention.py
	$(PY) bench/audit_sealing.py
