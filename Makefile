# The single entry point for people and CI alike.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export OPENBLAS_NUM_THREADS := 1
JEMALLOC_FOUND := $(PYTHON) -c "import ctypes.util, sys; sys.exit(not ctypes.util.find_library('jemalloc'))"

.PHONY: install demo test chaos lint typecheck unit bench bench-quick bench-report serve clean system-packages

install: $(STAMP)

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: install
	$(BIN)/shopper demo

serve: install system-packages
	$(BIN)/shopper serve

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: install
	$(BIN)/mypy

test: lint typecheck system-packages
	$(BIN)/pytest

# The fault scenarios alone (issue 12): real processes, a Redis of the test's own and the
# tansu broker, each broken and recovered under traffic; prints the table (README,
# "Readiness and faults").
chaos: install
	$(BIN)/pytest -m chaos -s tests/chaos

# What the tests need of the system, installed when missing where this runs as root with
# apt-get: Debian's chromium for the browser tests (Playwright's own browser download is
# not reachable here), and jemalloc, which `shopper serve` runs on where the system has it
# (shopper.allocator: it gives the memory of expired shoppers back to the system).
system-packages:
	@command -v chromium >/dev/null 2>&1 || [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1 \
		|| { echo "installing chromium (apt-get) for the browser tests"; apt-get update -qq \
			&& DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
	@$(JEMALLOC_FOUND) || [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1 \
		|| { echo "installing jemalloc (apt-get) for shopper serve"; apt-get update -qq \
			&& DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libjemalloc2 >/dev/null; }

# Every benchmark; the report (JSON, plots, markdown) goes to bench/results/.
bench: install
	$(BIN)/python -m benchmarks

# The page, processor and freshness benchmarks in their quick modes, reported under .shopper/.
bench-quick: install
	$(BIN)/python -m benchmarks --quick --out .shopper/bench-quick

# The plots and latest.md again from the saved bench/results/latest.json, and the README's figures.
bench-report: install
	$(BIN)/python -m benchmarks.report bench/results/latest.json --readme README.md

clean:
	rm -rf $(VENV) .shopper .pytest_cache .mypy_cache .ruff_cache
