# mksgn: every target creates the virtual environment when it is missing and is quick
# when it exists (the stamp is rebuilt only when pyproject.toml changes).
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.mksgn-installed
# lava-nc 0.10.0 declares Requires-Python <3.11 but runs on 3.11 with the fix in
# deploy/lava_compat.py; its real dependencies come from pyproject.toml. torch is pinned here
# (the local CPU wheel), not in the package.
LAVA   := lava-nc==0.10.0
TORCH  := torch==2.13.0
DEMO_OUT ?= runs/demo
PYTEST_ARGS ?=

.PHONY: venv demo test bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -c 'import sys; assert sys.version_info[:2] >= (3, 11), "mksgn needs Python 3.11 or newer (tomllib), not " + sys.version'
	$(PY) -m pip install --quiet --disable-pip-version-check "$(TORCH)" -e ".[dev]"
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --ignore-requires-python "$(LAVA)"
	@touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/mksgn-demo --out $(DEMO_OUT)

test: $(STAMP)
	$(PY) -m pytest -m "not slow" -q $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) -m pytest -m slow -q $(PYTEST_ARGS)
	$(PY) -m bench --out bench/results

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis runs bench/results
