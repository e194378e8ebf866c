#!/bin/sh
# The 100,000-message folder of issue 15, imapd beside the reference Dovecot in its high-performance
# mode, in the same run: cold and warm SELECT and UID FETCH of envelopes, random BODY[], SEARCH,
# POP3 login+STAT+UIDL, session PSS; see bench/README.md. The messages are generated once into
# $BIG_CACHE (default /var/tmp/maildaemons-bench-cache, about 310 MB) and copied from there.
# Usage: bench/run_big.sh [--nice -15] [--no-dovecot] [--big N] [compare.py options...]
set -eu
cd "$(dirname "$0")/.."
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
PYTHON=${PYTHON:-.venv/bin/python}
exec "$PYTHON" bench/compare.py --protocol imap --big 100000 --big-only --tuned --big-passes 4 \
    --big-cache "${BIG_CACHE:-/var/tmp/maildaemons-bench-cache}" "$@"
