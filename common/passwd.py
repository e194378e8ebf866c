"""maildaemons-passwd: print a password hash for the users file, like `doveadm pw`.

Usage:
  maildaemons-passwd [-s SCHEME] [-u USER]
  maildaemons-passwd -t HASH
  maildaemons-passwd -l
  maildaemons-passwd -h | --help
  maildaemons-passwd -v | --version

Options:
  -h --help             Show this help and exit.
  -v --version          Show the version and exit.
  -s SCHEME             The scheme of the new hash [default: ARGON2ID].
  -u USER               Print a whole users-file line, USER:{SCHEME}hash.
  -t HASH               Read a password and check it against HASH ({SCHEME}hash);
                        exit 0 when it matches, 1 when it does not.
  -l                    List the schemes a hash can be made with.

The password is read from the terminal without echo (twice, for a new hash), or as one line from
standard input when that is not a terminal; it is never a command-line argument, where other
users could read it with ps(1). The hash is printed on standard output:

  maildaemons-passwd                          {ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$...
  echo 's3cret' | maildaemons-passwd -u bob >> /etc/maildaemons/users

Exit status: 0 on success; 1 when the password is empty, the two entries differ or -t does not
match; 2 on a usage error (an unknown scheme).
"""

from __future__ import annotations

import getpass
import sys
from typing import Any, TextIO

from docopt import DocoptExit, docopt

from common.store.names import InvalidName, check_username
from common.users import HASH_SCHEMES, UserFileError, hash_password, verify_password
from common.version import VERSION

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


class PasswordError(Exception):
    """No usable password was read; the message is the one line for stderr."""


def read_password(stdin: TextIO, confirm: bool) -> str:
    """From the terminal without echo (and again when `confirm`), else one line of `stdin`."""
    if stdin.isatty():
        password = getpass.getpass("Enter new password: " if confirm else "Enter password: ")
        if confirm and password != getpass.getpass("Retype new password: "):
            raise PasswordError("passwords do not match")
    else:
        password = stdin.readline().removesuffix("\n").removesuffix("\r")
    if not password:
        raise PasswordError("empty passwords are not allowed")
    return password


def run(args: dict[str, Any], stdin: TextIO, stdout: TextIO) -> int:
    if args["-l"]:
        print(" ".join(HASH_SCHEMES), file=stdout)
        return EXIT_OK
    if args["-t"] is not None:
        password = read_password(stdin, confirm=False)
        matched = verify_password(args["-t"], password)
        print("verified" if matched else "not verified", file=stdout)
        return EXIT_OK if matched else EXIT_FAIL
    scheme = str(args["-s"]).upper()
    if scheme not in HASH_SCHEMES:
        raise DocoptExit(f"unknown scheme {scheme} (-l lists them)")
    user = args["-u"]
    if user is not None:
        try:
            check_username(user)
        except InvalidName as exc:
            raise DocoptExit(f"bad user name {user!r}: {exc}") from None
    hashed = hash_password(read_password(stdin, confirm=True), scheme)
    print(f"{user}:{hashed}" if user is not None else hashed, file=stdout)
    return EXIT_OK


def main(argv: list[str] | None = None) -> None:
    try:
        args = docopt(__doc__ or "", argv=argv, version=f"maildaemons-passwd {VERSION}")
        code = run(args, sys.stdin, sys.stdout)
    except DocoptExit as exc:
        print(f"maildaemons-passwd: {exc}".splitlines()[0], file=sys.stderr)
        code = EXIT_USAGE
    except (PasswordError, UserFileError) as exc:
        print(f"maildaemons-passwd: {exc}", file=sys.stderr)
        code = EXIT_FAIL
    except (KeyboardInterrupt, EOFError):
        print("", file=sys.stderr)
        code = EXIT_FAIL
    sys.exit(code)


if __name__ == "__main__":
    main()
