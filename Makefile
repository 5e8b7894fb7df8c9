PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test install bench clean chromium

# Create .venv when missing and install the project (torch/torchvision pinned) into it.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(PY) run_all.py $(ARGS)

test: $(STAMP) chromium
	$(PY) -m pytest -q $(PYTEST_ARGS)

# Debian's chromium renders report.html in a test; installed when missing and apt-get is usable.
chromium:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	{ [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null; } || \
	echo "note: chromium could not be installed; the report rendering test will be skipped"

bench: $(STAMP)
	$(PY) -m pytest tests/bench --benchmark-enable --benchmark-autosave -q $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) results/*/ .cache
