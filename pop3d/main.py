"""pop3d: the maildaemons POP3 server (RFC 1939, 2449, 5034) over Maildir.

Usage:
  pop3d [options] [-u NAME:PASS]...
  pop3d -h | --help
  pop3d -v | --version

Options:
  -l ADDR               Address to listen on; '*' is every interface, v4 and v6 (default *).
  -p PORT               Port to listen on (default 110).
  -u NAME:PASS          A user and password (repeatable), besides the users file.
  -t CMD                Transformer: RETR pipes each message through `/bin/sh -c CMD`.
{common_options}

Flags override the config file; MSMP SET values (maildir, transformer) override both.
Stop with `kill -TERM $(cat PIDFILE)`; `kill -HUP` re-reads the config and users.
"""

from __future__ import annotations

import sys

from docopt import docopt

from common import service
from common.cli import usage
from common.version import VERSION
from pop3d import replies
from pop3d.commands import COMMANDS
from pop3d.session import HARD_MAX_LINE, Session

__doc__ = usage(__doc__, "pop3d")


PROTOCOL = service.Protocol(
    name="pop3",
    daemon="pop3d",
    busy_reply=replies.busy,
    session=Session,
    commands=COMMANDS,
    tls=True,
    # Commands are held to `max_line` by the session; SASL responses may be longer.
    max_line=lambda settings: HARD_MAX_LINE,
    opens_relay=True,
    flags={"-l": "listen", "-p": "port", "-t": "transformer"},
    check=service.check_relay,
)


def main(argv: list[str] | None = None) -> None:
    args = docopt(__doc__, argv=argv, version=f"pop3d (maildaemons) {VERSION}")
    sys.exit(service.main(PROTOCOL, args))


if __name__ == "__main__":
    main()
