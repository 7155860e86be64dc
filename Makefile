# The README's two quick-start commands: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# tensorstore (an independent Zarr v3 reader) needs numpy>=2; compressai pins numpy<2: own venv
TS_VENV ?= .venv-tensorstore

.PHONY: setup tensorstore demo test bench lint format clean

setup: $(VENV)/.installed

# A plain pip install: on a machine with a local torch wheel cache this resolves
# torch + torchvision without downloads; elsewhere pip fetches the CUDA build.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[test]"
	touch $@

demo: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" bash scripts/demo.sh

$(TS_VENV)/.installed:
	$(PYTHON) -m venv $(TS_VENV)
	$(TS_VENV)/bin/python -m pip install --quiet --disable-pip-version-check "tensorstore>=0.1.60" "numpy>=2"
	touch $@

# the tensorstore check (tests/test_zarr_portable.py) runs scripts/read_with_tensorstore.py there
tensorstore: $(TS_VENV)/.installed

test: setup tensorstore
	$(BIN)/pytest

bench: setup
	$(BIN)/python benchmarks/encode.py
	$(BIN)/python benchmarks/encode_scaling.py
	@if [ -f benchmarks/train_input.py ]; then $(BIN)/python benchmarks/train_input.py; fi
	@if [ -f benchmarks/train_speed.py ]; then $(BIN)/python benchmarks/train_speed.py; fi
	$(BIN)/python benchmarks/codec_zoo.py
	$(BIN)/python benchmarks/api_read.py
	$(BIN)/python benchmarks/det_speed.py

lint: setup
	$(BIN)/ruff check latentcache tests benchmarks scripts
	$(BIN)/ruff format --check latentcache tests benchmarks scripts
	$(BIN)/python scripts/check_structure.py

format: setup
	$(BIN)/ruff format latentcache tests benchmarks scripts

clean:
	rm -rf $(VENV) $(TS_VENV) demo-out .pytest_cache
