"""imapd: the maildaemons IMAP4rev1 server (RFC 3501) over Maildir++.

Usage:
  imapd [options] [-u NAME:PASS]...
  imapd -h | --help
  imapd -v | --version

Options:
  -h --help             Show this help and exit.
  -v --version          Show the version and exit.
  -f --foreground       Stay attached and log to stderr (tests, systemd Type=simple).
  -c FILE --config=FILE
                        Config file (default /etc/maildaemons/maildaemons.conf).
  -l ADDR               Address to listen on; '*' is every interface, v4 and v6 (default *).
  -p PORT               Port to listen on (default 143).
  -d DIR                Maildir base: a user's mail is DIR/<user>/.
  -u NAME:PASS          A user and password (repeatable), besides the users file.
  --users=FILE          Users file (Dovecot passwd-file format).
  --state-dir=DIR       State directory (runtime settings from MSMP SET).
  --pidfile=FILE        Pidfile (default <run_dir>/imapd.pid).
  --stats-socket=PATH   mailstatd's socket (default <run_dir>/mailstatd.sock).
  --log=TARGET          Log to 'syslog', 'stderr' or a file path.

Flags override the config file; MSMP SET maildir overrides both.
Stop with `kill -TERM $(cat PIDFILE)`; `kill -HUP` re-reads the config and users.
"""

from __future__ import annotations

import sys

from docopt import docopt

from common import service
from common.version import VERSION
from imapd import responses
from imapd.commands import COMMANDS
from imapd.session import Session

PROTOCOL = service.Protocol(
    name="imap",
    daemon="imapd",
    busy_reply=responses.busy,
    session=Session,
    commands=COMMANDS,
    max_line=lambda settings: settings.get_int("max_line"),
    opens_relay=True,
    check=service.check_relay,
    flags={"-l": "listen", "-p": "port"},
    int_keys=("port", "max_children", "max_per_address", "idle_timeout", "max_line", "max_literal"),
    float_keys=("auth_failure_delay", "shutdown_grace", "idle_keepalive"),
)


def main(argv: list[str] | None = None) -> None:
    args = docopt(__doc__, argv=argv, version=f"imapd (maildaemons) {VERSION}")
    sys.exit(service.main(PROTOCOL, args))


if __name__ == "__main__":
    main()
