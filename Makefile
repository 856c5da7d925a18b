# The README's two commands: `make demo` and `make test`. Each sets up .venv first.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: setup demo test browser protos clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev,train]'
	$(VENV)/bin/pip uninstall --quiet -y torchvision torchaudio torchcodec
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/verirl demo

test: $(STAMP) browser
	$(VENV)/bin/python -m pytest -q

# The eval report's browser test (tests/test_report_browser.py) needs a headless Chromium: Debian's package,
# installed once when missing (as root, or through sudo), quietly; a no-op when one is already there.
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		echo "installing chromium (apt) for the report's browser test"; \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null; }

protos: $(STAMP)
	$(VENV)/bin/python scripts/gen_protos.py

clean:
	rm -rf $(VENV) build *.egg-info
