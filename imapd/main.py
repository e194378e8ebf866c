"""imapd: the maildaemons IMAP4rev1 server (RFC 3501) over Maildir++.

Usage:
  imapd [options] [-u NAME:PASS]...
  imapd -h | --help
  imapd -v | --version

Options:
  -l ADDR               Address to listen on; '*' is every interface, v4 and v6 (default *).
  -p PORT               Port to listen on (default 143).
  -u NAME:PASS          A user and password (repeatable), besides the users file.
{common_options}

Flags override the config file; MSMP SET maildir overrides both.
Stop with `kill -TERM $(cat PIDFILE)`; `kill -HUP` re-reads the config and users.
"""

from __future__ import annotations

import socket
import sys

from docopt import docopt

from common import service
from common.cli import usage
from common.lineio import LineIO
from common.logs import SessionLog
from common.server import Handler
from common.version import VERSION
from imapd import commands  # noqa: F401 (imported before the first fork)
from imapd.session import Session

__doc__ = usage(__doc__, "imapd")


def busy_reply(reason: str) -> bytes:
    if reason == "address":
        return b"* BYE Too many connections from your address, try again later\r\n"
    return b"* BYE Too many connections, try again later\r\n"


def make_handler(state: service.MasterState) -> Handler:
    def handle(conn: socket.socket, address: str, number: int, interrupt_fd: int) -> int:
        settings = state.settings
        services = state.session_services()
        io = LineIO(
            conn, settings.get_int("max_line"), settings.get_float("idle_timeout"), interrupt_fd
        )
        log = SessionLog(state.log, number, address)
        log.info("connect")
        return Session(io, services, address, number, log).run()

    return handle


PROTOCOL = service.Protocol(
    name="imap",
    daemon="imapd",
    make_handler=make_handler,
    busy_reply=busy_reply,
    check=service.check_relay,
    flags={"-l": "listen", "-p": "port"},
)


def main(argv: list[str] | None = None) -> None:
    args = docopt(__doc__, argv=argv, version=f"imapd (maildaemons) {VERSION}")
    sys.exit(service.main(PROTOCOL, args))


if __name__ == "__main__":
    main()
