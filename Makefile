# The README's two quick-start commands: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup demo test bench lint format clean

setup: $(VENV)/.installed

# A plain pip install: on a machine with a local torch wheel cache this resolves
# torch + torchvision without downloads; elsewhere pip fetches the CUDA build.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[test]"
	touch $@

demo: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" bash scripts/demo.sh

test: setup
	$(BIN)/pytest

bench: setup
	$(BIN)/python benchmarks/encode.py
	$(BIN)/python benchmarks/encode_scaling.py
	@if [ -f benchmarks/train_input.py ]; then $(BIN)/python benchmarks/train_input.py; fi

lint: setup
	$(BIN)/ruff check latentcache tests benchmarks scripts
	$(BIN)/ruff format --check latentcache tests benchmarks scripts

format: setup
	$(BIN)/ruff format latentcache tests benchmarks scripts

clean:
	rm -rf $(VENV) demo-out .pytest_cache
