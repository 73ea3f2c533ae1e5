# Fresh machine: `make run` serves on SQLite, `make test` runs the tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
RUN_STAMP := $(VENV)/.installed-run
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install lock run migrate test lint bench demo simulate clean

# uv installs exactly what uv.lock pins. It comes from PyPI into the venv itself (a fresh
# machine has only python3 and pip), and never downloads a Python of its own.
UV_VERSION := 0.13.9
UV := UV_PROJECT_ENVIRONMENT=$(VENV) UV_PYTHON_DOWNLOADS=never $(BIN)/uv

# The venv and, in it, the pinned uv (installed again only when the pin changes).
define BOOTSTRAP_UV
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/uv --version 2>/dev/null | grep -qF 'uv $(UV_VERSION) ' || \
		$(BIN)/python -m pip install --quiet --disable-pip-version-check 'uv==$(UV_VERSION)'
endef

# --compile-bytecode: uv leaves it to the first import otherwise, which never writes it where
# PYTHONDONTWRITEBYTECODE is set: each command would compile the libraries again (seconds).
$(STAMP): pyproject.toml uv.lock
	$(BOOTSTRAP_UV)
	$(UV) sync --locked --extra test --compile-bytecode --python $(BIN)/python
	touch $(STAMP) $(RUN_STAMP)

# Serving needs only the service's own dependencies: `make run` on a fresh machine installs
# those (--inexact: it leaves the test extras of an earlier `make test` in place).
$(RUN_STAMP): pyproject.toml uv.lock
	$(BOOTSTRAP_UV)
	$(UV) sync --locked --inexact --compile-bytecode --python $(BIN)/python
	touch $(RUN_STAMP)

install: $(STAMP)  ## the .venv with the service and the test extras, as uv.lock pins them

lock:  ## update uv.lock after a change to the dependencies in pyproject.toml
	$(BOOTSTRAP_UV)
	$(UV) lock --python $(BIN)/python

migrate: $(RUN_STAMP)
	$(BIN)/visma-hooks migrate

run: migrate  ## serve on 127.0.0.1:8000 with the embedded SQLite default
	$(BIN)/visma-hooks serve --host $(HOST) --port $(PORT)

simulate: $(RUN_STAMP)  ## the Visma.net simulator on 127.0.0.1:8090
	$(BIN)/visma-hooks simulate --port 8090

test: $(STAMP)  ## lint, type-check, check the import rules and run the tests (TEST_DATABASE_URL picks the database)
	$(BIN)/ruff check service tests clients
	$(BIN)/mypy --strict service
	$(BIN)/mypy --strict clients/python/src
	$(BIN)/lint-imports --no-cache
	$(BIN)/pytest -q --cov --cov-report=term:skip-covered --cov-fail-under=85

lint: $(STAMP)
	$(BIN)/ruff check service tests clients
	$(BIN)/ruff format --check service clients
	$(BIN)/mypy --strict service
	$(BIN)/mypy --strict clients/python/src
	$(BIN)/lint-imports --no-cache

# BENCH_DATABASE_URL: the PostgreSQL database to (re)create; its name must contain "bench".
BENCH_DATABASE_URL ?= postgresql://root@127.0.0.1:5432/bench
BENCH_ARGS ?=

bench: $(STAMP)  ## ingest throughput vs the bare endpoint, then 1M-job query timings (docs/benchmarks.md)
	@command -v wrk >/dev/null 2>&1 || { \
		echo "installing wrk (Debian package)"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq wrk >/dev/null; }
	@pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null || { \
		command -v pg_lsclusters >/dev/null 2>&1 && pg_lsclusters --no-header | \
		while read -r version cluster _; do \
			pg_ctlcluster --skip-systemctl-redirect "$$version" "$$cluster" start || true; \
		done; sleep 2; }
	BENCH_DATABASE_URL=$(BENCH_DATABASE_URL) $(BIN)/python -m tests.bench.run $(BENCH_ARGS)

demo: $(RUN_STAMP)  ## rehearse Visma's outcomes and failure modes against the simulator
	$(BIN)/visma-hooks demo

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
