# Calibrate developer entry points. `make demo` and `make test` set everything up on a fresh
# machine (virtualenv, dependencies, database migrations) before they run.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: demo test bench bench-copilot bench-api bench-events bench-analytics bench-scale sandbox ui sql install clean extraction-report api openapi

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

## Copilot latency: offline simulate p95 over the documented forms, propose including the preview.
bench-copilot: install
	$(BIN)/python -m calibr_pipeline_tests.benchmarks.bench_copilot

## Precision / recall / F1 of offer extraction on the vendored development set, and the
## parse-price score on price-parser's public test strings (prints the misses).
extraction-report: install
	$(BIN)/python -m calibr_pipeline_tests.extraction_report

## HTTP API and runs console on 127.0.0.1:8000 (docs/api.md).
api: install
	$(BIN)/calibr api

## Regenerate docs/openapi.json from the app (a test keeps it current).
openapi: install
	$(BIN)/python -m calibr_pipeline.api.openapi_doc

## API latency benchmark: p95 of GET runs / targets / audit, 20 clients for 30 s, SQLite and PostgreSQL.
bench-api: install
	$(BIN)/python -m calibr_pipeline_tests.benchmarks.bench_api

## Event throughput: validated outbox writes (SQLite, PostgreSQL), sensor dispatch, replay of 1,000,000 archived events.
bench-events: install
	$(BIN)/python -m calibr_pipeline_tests.benchmarks.bench_events

## Analytics backfill benchmark (90 days × 10,000 SKUs × 2 tenants) on SQLite, then on PostgreSQL if reachable.
bench-analytics: install
	$(BIN)/python -m calibr_pipeline_tests.benchmarks.bench_analytics
	@if $(BIN)/python -c "import sqlalchemy as s; s.create_engine('postgresql+psycopg2://postgres@127.0.0.1:5432/test').connect()" 2>/dev/null; then \
		$(BIN)/python -c "import sqlalchemy as s; e = s.create_engine('postgresql+psycopg2://postgres@127.0.0.1:5432/test', isolation_level='AUTOCOMMIT'); c = e.connect(); c.exec_driver_sql('DROP DATABASE IF EXISTS calibr_bench_analytics WITH (FORCE)'); c.exec_driver_sql('CREATE DATABASE calibr_bench_analytics')" && \
		$(BIN)/python -m calibr_pipeline_tests.benchmarks.bench_analytics --warehouse-url postgresql+psycopg2://postgres@127.0.0.1:5432/calibr_bench_analytics; \
	else echo "PostgreSQL not reachable on 127.0.0.1:5432: skipped"; fi
## Scaling curves: wall time and peak RSS of catalog store, scrape, preview, apply (sync and bulk) and
## analytics at 1k/10k/100k SKUs (and listings), with the growth per 10x; ~20 min.
## `make bench-scale BENCH_SCALE_ARGS=--quick` measures 1k and 10k only (~4 min); see bench_scale.py --help.
BENCH_SCALE_ARGS ?=
bench-scale: install
	$(BIN)/python -m calibr_pipeline_tests.benchmarks.bench_scale $(BENCH_SCALE_ARGS)

sandbox: install
	$(BIN)/calibr sandbox

## Regenerate sql/views/*.sql from calibr_pipeline/warehouse/views.py.
sql: install
	$(BIN)/python -m calibr_pipeline.warehouse.views

clean:
	rm -rf $(VENV) .calibr .pytest_cache
