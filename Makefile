# The two commands a newcomer needs:  `make demo`  and  `make test`.
# Both set up everything on a fresh machine (venv, Python deps, system packages and the
# strongSwan 6.1 test peer when running as root); re-running them is a fast no-op.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.pqike-installed

.PHONY: demo test setup system clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test,oqs,pqcrypto]'
	touch $@

setup: $(STAMP)

# System packages and the strongSwan peer: only possible (and only attempted) as root.
system:
	@bash scripts/setup-system.sh

demo: setup
	$(PY) -m pqike demo

test: setup system
	$(PY) -m pytest

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
