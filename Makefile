# The two commands a newcomer needs:  `make demo`  and  `make test`.
# Both set up everything on a fresh machine (venv, Python deps, liboqs, system packages and the
# strongSwan 6.1 test peer when running as root); re-running them is a fast no-op.

PYTHON ?= $(shell sh scripts/python.sh)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.pqike-installed

# liboqs 0.16.0 is built from upstream when reachable, else from this release tarball (CI and
# fresh machines have ../shared/vendor beside the checkout).
PQIKE_LIBOQS_TARBALL ?= $(wildcard $(abspath ../shared/vendor/liboqs-0.16.0.tar.gz))
export PQIKE_LIBOQS_TARBALL

.PHONY: demo test setup system liboqs clean

$(STAMP): pyproject.toml
	@# without the distribution's venv package (Debian: python3-venv) the first python3 on PATH
	test -x $(PY) || $(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); \
	  echo "make: $(PYTHON) -m venv failed; making the venv with python3 instead" >&2; \
	  python3 -m venv $(VENV); }
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test,oqs,pqcrypto,bench]'
	touch $@

setup: $(STAMP)

# System packages and the test peers: only possible (and only attempted) as root.
# pq-strongswan links against liboqs, so liboqs comes first.
system: liboqs
	@bash scripts/setup-system.sh

# liboqs into its cache (scripts/liboqs.sh --prefix); without it the BIKE/HQC/FrodoKEM/Kyber
# tests skip, so CI stops here when the build fails.
liboqs:
	@bash scripts/liboqs.sh >/dev/null || { \
	  echo "make: liboqs could not be built; the tests that need it will skip" >&2; \
	  [ "$${CI:-}" != true ]; }

demo: setup liboqs
	$(PY) -m pqike demo

test: setup liboqs system
	$(PY) -m pytest

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
