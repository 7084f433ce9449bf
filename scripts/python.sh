#!/bin/sh
# The interpreter `make setup` makes the venv from (`make PYTHON=...` overrides it): the
# distribution's /usr/bin/python3 when it is 3.11 or newer, else the first python3 on PATH.
# Why not simply the first on PATH: on the bench machine that is pyenv's 3.11.7, built with
# --enable-shared and without --enable-optimizations, where Debian's is a statically linked
# interpreter; the same pqike code spends 12-14 % more CPU per handshake on pyenv's (the
# responder, in memory and in `pqike bench load`; bench/README.md "Interpreter").
for p in /usr/bin/python3 python3; do
  if command -v "$p" >/dev/null 2>&1 &&
     "$p" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    command -v "$p"
    exit 0
  fi
done
echo python3
