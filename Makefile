# Every target installs what it needs into .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PYTEST_WORKERS ?= 2

.PHONY: install demo test lint bench scale eval chaos clean

# Bytecode is compiled at install: every process (code server, daemon, each run) imports
# dagster in about half the time; where PYTHONDONTWRITEBYTECODE is set (our CI machines),
# nothing else would write it.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check uv
	$(BIN)/uv pip install --python $(BIN)/python --quiet --compile-bytecode -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/accrue demo

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy

test: install lint
	$(BIN)/pytest -n $(PYTEST_WORKERS) -q -p no:cacheprovider

bench: install
	$(BIN)/python -m benchmarks.sync_bench
	$(BIN)/python -m benchmarks.concierge_p1
	$(BIN)/python -m benchmarks.first_recommendation
	$(BIN)/python -m benchmarks.run_overhead
	$(BIN)/python -m benchmarks.results_pages
	$(BIN)/python -m benchmarks.file_import_bench $(FILE_IMPORT_BENCH_ARGS)
	$(BIN)/python -m benchmarks.push_bench $(PUSH_BENCH_ARGS)
	$(BIN)/uv pip install --python $(BIN)/python --quiet --compile-bytecode -e '.[dev,compare]'
	$(BIN)/python -m benchmarks.loader_compare $(LOADER_COMPARE_ARGS)

# The real daemon with 10, 100, 200 and 1,000 tenants (about 1.5-2 hours; not part of `test`).
scale: install
	$(BIN)/python -m benchmarks.scale $(SCALE_ARGS)

eval: install
	$(BIN)/python -m benchmarks.eval_pricing

# Every registered CRM, 17 trials each per backend (about 50 per backend in total); then the
# push path (agent, push API, processor SIGKILLed; 5 trials per backend) and the file import
# (`accrue import` SIGKILLed; 5 trials per backend); docs/chaos.md.
chaos: install
	$(BIN)/python -m benchmarks.chaos --crm all --trials 17 $(CHAOS_ARGS)
	$(BIN)/python -m benchmarks.chaos_push --trials 5 $(CHAOS_PUSH_ARGS)
	$(BIN)/python -m benchmarks.chaos_import --trials 5 $(CHAOS_IMPORT_ARGS)

clean:
	rm -rf $(VENV) .accrue .pytest_cache .ruff_cache
