# The README's two commands: `make demo` and `make test`. Each sets up .venv first.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: setup demo test protos clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev,train]'
	$(VENV)/bin/pip uninstall --quiet -y torchvision torchaudio torchcodec
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/verirl demo

test: $(STAMP)
	$(VENV)/bin/python -m pytest -q

protos: $(STAMP)
	$(VENV)/bin/python scripts/gen_protos.py

clean:
	rm -rf $(VENV) build *.egg-info
