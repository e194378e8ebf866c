#!/bin/sh
# IMAP benchmark (issue 5), imapd beside the reference Dovecot (when installed): see bench/README.md.
# Session rates at 1/4/16 clients, the hold test, then the big mailbox of 10,000 messages.
# Usage: bench/run_imap.sh [--tuned] [--duration T] [--hold N] [--big N|--big-only] [options...]
set -eu
cd "$(dirname "$0")/.."
# The hold test needs two descriptors per held connection in the load tool, one in each server.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
PYTHON=${PYTHON:-.venv/bin/python}
exec "$PYTHON" bench/compare.py --protocol imap --big 10000 "$@"
