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

import socket
import sys
from collections.abc import Callable
from pathlib import Path

from docopt import docopt

from common import service, stats_query  # noqa: F401 (imported before the first fork)
from common.cli import usage
from common.lineio import LineIO
from common.logs import SessionLog
from common.server import Handler
from common.version import VERSION
from msmpd import accounts, commands, replies  # noqa: F401 (imported before the first fork)
from msmpd.session import Services, Session

__doc__ = usage(__doc__, "msmpd")


def handler_factory(start_dir: Path) -> Callable[[service.MasterState], Handler]:
    def make_handler(state: service.MasterState) -> Handler:
        def handle(conn: socket.socket, address: str, number: int, interrupt_fd: int) -> int:
            settings = state.settings
            services = Services(settings, state.users, state.stats, state.log, start_dir)
            io = LineIO(conn, replies.MAX_LINE, settings.get_float("idle_timeout"), interrupt_fd)
            log = SessionLog(state.log, number, address)
            log.info("connect")
            return Session(io, services, address, log).run()

        return handle

    return make_handler


def protocol(start_dir: Path) -> service.Protocol:
    return service.Protocol(
        name="msmp",
        daemon="msmpd",
        make_handler=handler_factory(start_dir),
        busy_reply=replies.busy,
        flags={"-L": "listen", "-P": "port", "--admins": "admins_file"},
        users_key="admins_file",
        inline_users_flag="-a",
    )


def main(argv: list[str] | None = None) -> None:
    args = docopt(__doc__, argv=argv, version=f"msmpd (maildaemons) {VERSION}")
    # Before detaching: the daemon's working directory becomes "/".
    sys.exit(service.main(protocol(Path.cwd()), args))


if __name__ == "__main__":
    main()
