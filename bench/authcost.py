"""What a login's password check costs: `UserDB.verify()` per scheme, with and without the cache
of verified logins (common/users.py), in-process.

    .venv/bin/python bench/authcost.py [--count 20] [--schemes ARGON2ID,PBKDF2,SHA512-CRYPT,PLAIN]

For each scheme, a users file of one user: `count` verifications with the cache off (every one
computes the scheme), then with it on (the first computes, the rest are cache hits), and a wrong
password (never cached). Prints the median and the worst of each, in milliseconds. With
`--dovecot`, also the time `doveadm pw -t` takes for the same hash (a process start included).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common.users import UserDB, hash_password  # noqa: E402

PASSWORD = "correct horse battery staple"


def timed(db: UserDB, password: str, count: int) -> list[float]:
    times = []
    for _ in range(count):
        start = time.perf_counter()
        db.verify("alice", password)
        times.append((time.perf_counter() - start) * 1000)
    return times


def row(label: str, times: list[float]) -> str:
    return f"  {label:28s} median {statistics.median(times):9.3f} ms   max {max(times):9.3f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--count", type=int, default=20)
    parser.add_argument("--schemes", default="ARGON2ID,PBKDF2,SHA512-CRYPT,PLAIN")
    parser.add_argument("--dovecot", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        users = Path(tmp) / "users"
        for scheme in args.schemes.split(","):
            stored = hash_password(PASSWORD, scheme)
            users.write_text(f"alice:{stored}\n")
            print(f"{scheme}:")
            off = UserDB(users, cache_size=0)
            on = UserDB(users, cache_size=1000, cache_ttl=3600)
            print(row("verify, no cache", timed(off, PASSWORD, args.count)))
            first = timed(on, PASSWORD, 1)
            print(row("verify, cache: first", first))
            print(row("verify, cache: the others", timed(on, PASSWORD, args.count)))
            print(row("wrong password (cache on)", timed(on, PASSWORD + "x", args.count)))
            if args.dovecot:
                times = []
                for _ in range(min(args.count, 5)):
                    start = time.perf_counter()
                    subprocess.run(
                        ["doveadm", "pw", "-t", stored, "-p", PASSWORD],
                        check=True,
                        capture_output=True,
                    )
                    times.append((time.perf_counter() - start) * 1000)
                print(row("doveadm pw -t (a process)", times))


if __name__ == "__main__":
    main()
