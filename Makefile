# Calibrate developer entry points. `make demo` and `make test` set everything up on a fresh
# machine (virtualenv, dependencies, database migrations) before they run.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: demo test bench bench-scale sandbox ui sql install clean

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

## Scaling curves: wall time and peak RSS of catalog, preview and apply at 1k/10k/100k SKUs.
bench-scale: install
	$(BIN)/python -m calibr_pipeline_tests.benchmarks.bench_scale

sandbox: install
	$(BIN)/calibr sandbox

## Regenerate sql/views/*.sql from calibr_pipeline/warehouse/views.py.
sql: install
	$(BIN)/python -m calibr_pipeline.warehouse.views

clean:
	rm -rf $(VENV) .calibr .pytest_cache
