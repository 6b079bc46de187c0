# The single entry point for people and CI alike.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export OPENBLAS_NUM_THREADS := 1

.PHONY: install demo test lint typecheck unit bench serve clean chromium

install: $(STAMP)

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: install
	$(BIN)/shopper demo

serve: install
	$(BIN)/shopper serve

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: install
	$(BIN)/mypy

test: lint typecheck chromium
	$(BIN)/pytest

# The browser tests drive Debian's chromium (Playwright's own browser download is not
# reachable here); installed when missing where this runs as root with apt-get.
chromium:
	@command -v chromium >/dev/null 2>&1 || [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1 \
		|| { echo "installing chromium (apt-get) for the browser tests"; apt-get update -qq \
			&& DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

bench: install
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) .shopper .pytest_cache .mypy_cache .ruff_cache
