# Calibrate developer entry points. `make demo` and `make test` set everything up on a fresh
# machine (virtualenv, dependencies, database migrations) before they run.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: demo test bench bench-analytics sandbox ui sql install clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP)

## Seed the demo tenants against the sandbox, run the whole pipeline, open the Dagster UI on :3000.
demo: install
	$(BIN)/calibr demo

## All tests, on SQLite and on the local PostgreSQL (started if needed).
test: install
	bash scripts/test.sh

## Performance benchmarks (prints figures; not part of the test suite).
bench: install
	$(BIN)/python -m calibr_pipeline_tests.benchmarks.run_all

## Analytics backfill benchmark (90 days × 10,000 SKUs × 2 tenants) on SQLite, then on PostgreSQL if reachable.
bench-analytics: install
	$(BIN)/python -m calibr_pipeline_tests.benchmarks.bench_analytics
	@if $(BIN)/python -c "import sqlalchemy as s; s.create_engine('postgresql+psycopg2://postgres@127.0.0.1:5432/test').connect()" 2>/dev/null; then \
		$(BIN)/python -c "import sqlalchemy as s; e = s.create_engine('postgresql+psycopg2://postgres@127.0.0.1:5432/test', isolation_level='AUTOCOMMIT'); c = e.connect(); c.exec_driver_sql('DROP DATABASE IF EXISTS calibr_bench_analytics WITH (FORCE)'); c.exec_driver_sql('CREATE DATABASE calibr_bench_analytics')" && \
		$(BIN)/python -m calibr_pipeline_tests.benchmarks.bench_analytics --warehouse-url postgresql+psycopg2://postgres@127.0.0.1:5432/calibr_bench_analytics; \
	else echo "PostgreSQL not reachable on 127.0.0.1:5432: skipped"; fi

sandbox: install
	$(BIN)/calibr sandbox

## Regenerate sql/views/*.sql from calibr_pipeline/warehouse/views.py.
sql: install
	$(BIN)/python -m calibr_pipeline.warehouse.views

clean:
	rm -rf $(VENV) .calibr .pytest_cache
