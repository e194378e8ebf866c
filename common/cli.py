"""The command line every daemon shares: its options' usage lines and the config key each sets.

A daemon's usage text is its `main.py` docstring, parsed by docopt (DESIGN.md "Commands"). The
options every daemon takes are written once, here: the docstring holds the line
`{common_options}` at the end of its options, and `usage()` replaces it with these lines before
docopt reads the text, so `--help` still prints the full list. A daemon that describes one of
these options itself (msmpd's `-d` says what ADD and DELE do there) keeps its own line, and the
shared one is left out.
"""

from __future__ import annotations

import re
from typing import Any

MARKER = "{common_options}"

# The shared options as --help prints them; `{program}` is the daemon's name.
COMMON_OPTIONS = """\
  -h --help             Show this help and exit.
  -v --version          Show the version and exit.
  -f --foreground       Stay attached and log to stderr (tests, systemd Type=simple).
  -c FILE --config=FILE
                        Config file (default $MAILDAEMONS_CONF, else
                        /etc/maildaemons/maildaemons.conf).
  -d DIR                Maildir base: a user's mail is DIR/<user>/.
  --users=FILE          Users file (Dovecot passwd-file format).
  --state-dir=DIR       State directory (runtime settings from MSMP SET).
  --pidfile=FILE        Pidfile (default <run_dir>/{program}.pid).
  --stats-socket=PATH   mailstatd's socket (default <run_dir>/mailstatd.sock).
  --log=TARGET          Log to 'syslog', 'stderr' or a file path.
"""

# docopt option -> the config key it overrides, for the options every daemon shares.
COMMON_FLAGS: dict[str, str] = {
    "--pidfile": "pidfile",
    "--stats-socket": "stats_socket",
    "--state-dir": "state_dir",
    "--users": "users_file",
    "--log": "log",
    "-d": "mail_base",
}

OPTION_LINE = re.compile(r"^ {1,4}(--?[A-Za-z][\w-]*)", re.M)


def option_entries(text: str) -> list[tuple[str, str]]:
    """(first option, its lines) for each option of a usage text, continuation lines included."""
    entries: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        match = OPTION_LINE.match(line)
        if match:
            entries.append((match.group(1), [line]))
        elif entries and line.startswith(" " * 5):
            entries[-1][1].append(line)
    return [(option, "\n".join(lines)) for option, lines in entries]


def usage(doc: str | None, program: str) -> str:
    """`doc` with its `{common_options}` line replaced by the shared options it does not
    describe itself. A module uses it as `__doc__ = usage(__doc__, "pop3d")`."""
    text = doc or ""
    if MARKER not in text:
        raise ValueError(f"{program}: the usage text has no {MARKER} line")
    own = {option for option, _ in option_entries(text)}
    shared = [lines for option, lines in option_entries(COMMON_OPTIONS) if option not in own]
    block = "\n".join(shared).format(program=program)
    return re.sub(rf"^[ \t]*{re.escape(MARKER)}[ \t]*$", lambda _: block, text, flags=re.M)


def overrides(args: dict[str, Any], flags: dict[str, str]) -> dict[str, str | None]:
    """The config keys that parsed docopt arguments set: COMMON_FLAGS and the daemon's `flags`.
    A boolean flag given (such as --join-mailbox-user) sets its key to "yes"."""
    result: dict[str, str | None] = {}
    for flag, key in {**COMMON_FLAGS, **flags}.items():
        value = args.get(flag)
        if isinstance(value, str):
            result[key] = value
        elif value is True:
            result[key] = "yes"
    return result
