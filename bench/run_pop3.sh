#!/bin/sh
# POP3 benchmark, pop3d beside the reference Dovecot (when installed): see bench/README.md.
# Usage: bench/run_pop3.sh [--tuned] [--duration T] [--hold N] [compare.py options...]
set -eu
cd "$(dirname "$0")/.."
# The hold test needs two descriptors per held connection in the load tool, one in each server.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
PYTHON=${PYTHON:-.venv/bin/python}
exec "$PYTHON" bench/compare.py --protocol pop3 "$@"
