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

import sys

from docopt import docopt

from common import service
from common.cli import usage
from common.version import VERSION
from imapd import responses
from imapd.commands import COMMANDS
from imapd.session import Session

__doc__ = usage(__doc__, "imapd")


PROTOCOL = service.Protocol(
    name="imap",
    daemon="imapd",
    busy_reply=responses.busy,
    session=Session,
    commands=COMMANDS,
    tls=True,
    max_line=lambda settings: settings.get_int("max_line"),
    opens_relay=True,
    check=service.check_relay,
    flags={"-l": "listen", "-p": "port"},
)


def main(argv: list[str] | None = None) -> None:
    args = docopt(__doc__, argv=argv, version=f"imapd (maildaemons) {VERSION}")
    sys.exit(service.main(PROTOCOL, args))


if __name__ == "__main__":
    main()
