"""msmpd: the maildaemons management server (MSMP, seed 003 appendix 9.1).

Usage:
  msmpd [options] [-a NAME:PASS]...
  msmpd -h | --help
  msmpd -v | --version

Options:
  -L ADDR               Address to listen on (default 127.0.0.1).
  -P PORT               Port to listen on (default 4321).
  -a NAME:PASS          An administrator and password (repeatable), besides the admins file.
  -d DIR                Maildir base: ADD creates DIR/<user>/, DELE moves it to DIR/.deleted/.
  --users=FILE          Users file that ADD, DELE and LIST change (Dovecot passwd-file format).
  --admins=FILE         Admins file (same format) that USER/PASS are checked against.
  --state-dir=DIR       State directory: SET values are kept in DIR/runtime.json.
  --stats-socket=PATH   mailstatd's socket (default <run_dir>/mailstatd.sock): STAT, LOGS,
                        LIST <user> and DELE's "is logged in" are asked of mailstatd.
{common_options}

SET values (maildir, transformer) take effect for the next connection of every daemon and
override the config file and flags until set again. Our one addition to the RFC: every
multi-line reply (LIST, STAT, LOGS) ends with a line holding a single ".".
Stop with `kill -TERM $(cat PIDFILE)`; `kill -HUP` re-reads the config and admins.
"""

from __future__ import annotations

import sys

from docopt import docopt

from common import service
from common.cli import usage
from common.version import VERSION
from msmpd import replies
from msmpd.commands import COMMANDS
from msmpd.session import Session

__doc__ = usage(__doc__, "msmpd")


PROTOCOL = service.Protocol(
    name="msmp",
    daemon="msmpd",
    busy_reply=replies.busy,
    session=Session,
    commands=COMMANDS,
    tls=True,
    max_line=lambda settings: replies.MAX_LINE,
    flags={"-L": "listen", "-P": "port", "--admins": "admins_file"},
    users_key="admins_file",
    inline_users_flag="-a",
)


def main(argv: list[str] | None = None) -> None:
    args = docopt(__doc__, argv=argv, version=f"msmpd (maildaemons) {VERSION}")
    sys.exit(service.main(PROTOCOL, args))


if __name__ == "__main__":
    main()
