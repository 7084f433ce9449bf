#!/bin/sh
# Run a pytest selection inside user-mode Linux (a real kernel with ESP); as root.
#   scripts/uml-test.sh                       # tests/uml/esp
#   scripts/uml-test.sh tests/uml/esp -k gcm -v
# Exit status is pytest's in the guest (77: UML unavailable, 124: timeout, 125: guest setup).
# Artifacts (junit.xml, output.log, console.log) stay in the /tmp/pqike-uml-* directory shown.
cd "$(dirname "$0")/.." || exit 1
PY=.venv/bin/python; [ -x "$PY" ] || PY=python3
exec "$PY" -m tests.uml.harness "$@"
