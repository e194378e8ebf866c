"""pop3d: the maildaemons POP3 server (RFC 1939, 2449, 5034) over Maildir.

Usage:
  pop3d [options] [-u NAME:PASS]...
  pop3d -h | --help
  pop3d -v | --version

Options:
  -h --help             Show this help and exit.
  -v --version          Show the version and exit.
  -f --foreground       Stay attached and log to stderr (tests, systemd Type=simple).
  -c FILE --config=FILE
                        Config file (default /etc/maildaemons/maildaemons.conf).
  -l ADDR               Address to listen on; '*' is every interface, v4 and v6 (default *).
  -p PORT               Port to listen on (default 110).
  -d DIR                Maildir base: a user's mail is DIR/<user>/.
  -u NAME:PASS          A user and password (repeatable), besides the users file.
  -t CMD                Transformer: RETR pipes each message through `/bin/sh -c CMD`.
  --users=FILE          Users file (Dovecot passwd-file format).
  --state-dir=DIR       State directory (runtime settings from MSMP SET).
  --pidfile=FILE        Pidfile (default <run_dir>/pop3d.pid).
  --stats-socket=PATH   mailstatd's socket (default <run_dir>/mailstatd.sock).
  --log=TARGET          Log to 'syslog', 'stderr' or a file path.

Flags override the config file; MSMP SET values (maildir, transformer) override both.
Stop with `kill -TERM $(cat PIDFILE)`; `kill -HUP` re-reads the config and users.
"""

from __future__ import annotations

import sys

from docopt import docopt

from common import service
from common.config import ConfigError, Settings
from common.version import VERSION
from pop3d import replies
from pop3d.commands import COMMANDS
from pop3d.session import HARD_MAX_LINE, Session


def check_settings(settings: Settings) -> None:
    """Start-up and HUP: [relay], and the CAPA values that must be numbers."""
    service.check_relay(settings)
    delay = settings.get("login_delay")
    if delay and not (delay.isascii() and delay.isdigit()):
        raise ConfigError(f"setting login_delay must be a whole number of seconds, not {delay!r}")


PROTOCOL = service.Protocol(
    name="pop3",
    daemon="pop3d",
    busy_reply=replies.busy,
    session=Session,
    commands=COMMANDS,
    # Commands are held to `max_line` by the session; SASL responses may be longer.
    max_line=lambda settings: HARD_MAX_LINE,
    opens_relay=True,
    flags={"-l": "listen", "-p": "port", "-t": "transformer"},
    int_keys=("port", "max_children", "max_per_address", "idle_timeout", "max_line"),
    float_keys=("auth_failure_delay", "shutdown_grace", "transformer_timeout"),
    check=check_settings,
)


def main(argv: list[str] | None = None) -> None:
    args = docopt(__doc__, argv=argv, version=f"pop3d (maildaemons) {VERSION}")
    sys.exit(service.main(PROTOCOL, args))


if __name__ == "__main__":
    main()
