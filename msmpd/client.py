"""msmp: the MSMP companion client (seed 003, appendices 9.1 and 9.3).

Usage:
  msmp [options] [COMMAND...]
  msmp -h | --help
  msmp -v | --version

Options:
  -h --help             Show this help and exit.
  -v --version          Show the version and exit.
  -c FILE --config=FILE
                        Config file whose [msmpd] listen and port say where msmpd is (default
                        $MAILDAEMONS_CONF, else /etc/maildaemons/maildaemons.conf).
  -L ADDR               Server address (default: the config's, else 127.0.0.1).
  -P PORT               Server port (default: the config's, else 4321).
  -u ADMIN              Administrator name (default: $MSMP_USER, else a prompt).
  -t SECONDS --timeout=SECONDS
                        Give up on a silent server after this long [default: 30].
  --tls                 Send STLS first and verify the server's certificate and name (-L)
                        before the password is sent (needed where msmpd refuses it in clear).
  --cafile=FILE         With --tls: trust the CA certificates in FILE, not the system's.

With a COMMAND it logs in, sends that one command, prints the reply and exits:
  msmp STAT
  msmp ADD bob secret        (`msmp ADD bob` asks for bob's password instead)
  msmp SET transformer spamassassin -e
  msmp HELP                  (no login needed)
Without one it reads commands with line editing (or from a pipe, one a line) until QUIT or EOF.
Options go before the command. The password comes from $MSMP_PASSWORD or a prompt that does not
echo; it is never a command-line argument.

Commands (msmpd(8); the server's HELP lists the same):
{commands}

Exit status: 0 when every reply was +OK; 1 when one was -ERR (a failed login too); 2 on a usage
or connection error.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import socket
import ssl
import sys
from dataclasses import dataclass, field
from typing import Any

from docopt import DocoptExit, docopt

from common.config import ConfigError, Settings, read_config
from common.version import VERSION
from msmpd.replies import help_lines

__doc__ = (__doc__ or "").replace("{commands}", "\n".join(f"  {line}" for line in help_lines()))

EXIT_OK, EXIT_ERR, EXIT_USAGE = 0, 1, 2
MAX_LINE = 510  # characters before CRLF (appendix 9.1 section 2)
# Their +OK is followed by lines and "." (our addition to the RFC).
MULTILINE_VERBS = frozenset({"LIST", "STAT", "LOGS", "HELP"})
NO_LOGIN_VERBS = frozenset({"HELP"})  # allowed before USER and PASS
PROMPT = "msmp> "
# A listen address that is every interface is reached on loopback.
LOOPBACK = {"*": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}


class ClientError(Exception):
    """A usage or connection problem: one line on stderr, exit status 2."""


class UsageError(ClientError):
    """A command that cannot be sent; in interactive mode the next one may do better."""


@dataclass
class Reply:
    ok: bool
    text: str
    lines: list[str] | None = field(default=None)


class Connection:
    """One MSMP connection: CRLF lines out, replies (single or multi-line) in."""

    def __init__(self, host: str, port: int, timeout: float) -> None:
        try:
            self.sock = socket.create_connection((host, port), timeout=timeout)
        except OSError as exc:
            reason = exc.strerror or str(exc) or type(exc).__name__
            raise ClientError(f"cannot connect to {host} port {port}: {reason}") from None
        self.reader = self.sock.makefile("rb")

    def start_tls(self, context: ssl.SSLContext, host: str) -> None:
        """STLS (msmpd's, as POP3's RFC 2595 4), then the handshake; the name checked is the
        address the client was given (-L), as for any TLS client."""
        reply = self.command("STLS")
        if not reply.ok:
            raise ClientError(f"the server refused STLS: {reply.text}")
        try:
            self.sock = context.wrap_socket(self.sock, server_hostname=host)
        except ssl.SSLCertVerificationError as exc:
            raise ClientError(f"TLS failed: {exc.verify_message}") from None
        except (ssl.SSLError, OSError) as exc:
            raise ClientError(f"TLS failed: {getattr(exc, 'reason', None) or exc}") from None
        self.reader = self.sock.makefile("rb")

    def readline(self) -> str:
        try:
            data = self.reader.readline(MAX_LINE + 64)
        except TimeoutError:
            raise ClientError("no answer from the server") from None
        except OSError as exc:
            raise ClientError(f"connection lost: {exc.strerror or exc}") from None
        if not data.endswith(b"\n"):
            raise ClientError("connection closed by the server")
        return data.decode("utf-8", "replace").rstrip("\r\n")

    def send(self, text: str) -> None:
        try:
            self.sock.sendall(text.encode("utf-8") + b"\r\n")
        except OSError as exc:
            raise ClientError(f"connection lost: {exc.strerror or exc}") from None

    def reply(self, multiline: bool = False) -> Reply:
        first = self.readline()
        ok = first.startswith("+OK")
        if not ok and not first.startswith("-ERR"):
            raise ClientError(f"unexpected reply from the server: {first[:80]!r}")
        text = first[3 if ok else 4 :].strip()
        if not (ok and multiline):
            return Reply(ok, text)
        lines = []
        while (line := self.readline()) != ".":
            lines.append(line[1:] if line.startswith("..") else line)
        return Reply(ok, text, lines)

    def command(self, text: str) -> Reply:
        self.send(text)
        verb = text.split(maxsplit=1)[0].upper() if text.strip() else ""
        return self.reply(verb in MULTILINE_VERBS)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.reader.close()
            self.sock.close()


def check_line(text: str) -> str:
    if any(c in text for c in "\r\n\0"):
        raise UsageError("a command cannot hold line breaks or NUL")
    if len(text) > MAX_LINE:
        raise UsageError(f"command too long (at most {MAX_LINE} characters)")
    return text


def have_terminal() -> bool:
    try:
        fd = os.open("/dev/tty", os.O_RDWR)
    except OSError:
        return False
    os.close(fd)
    return True


def credentials(admin_flag: str | None) -> tuple[str, str]:
    admin = admin_flag or os.environ.get("MSMP_USER", "")
    if not admin:
        if not sys.stdin.isatty():
            raise ClientError("no admin name: use -u ADMIN or set MSMP_USER")
        admin = input("Admin: ").strip()
    password = os.environ.get("MSMP_PASSWORD")
    if password is None:
        if not have_terminal():
            raise ClientError("no password: set MSMP_PASSWORD or run on a terminal")
        password = getpass.getpass(f"Password for {admin}: ")
    return admin, password


def complete(words: list[str]) -> list[str]:
    """`ADD NAME` alone: ask for the new user's password (twice, not echoed) on a terminal."""
    if len(words) == 2 and words[0].upper() == "ADD" and have_terminal():
        first = getpass.getpass(f"New password for {words[1]}: ")
        if first != getpass.getpass("Again: "):
            raise UsageError("the passwords do not match")
        if not first or any(c.isspace() for c in first):
            raise UsageError("a password must be non-empty and hold no spaces")
        return [*words, first]
    return words


def greet(conn: Connection) -> None:
    greeting = conn.reply()
    if not greeting.ok:
        raise ClientError(f"server refused the connection: {greeting.text}")


def login(
    conn: Connection, admin: str, password: str, tls: tuple[ssl.SSLContext, str] | None = None
) -> Reply:
    greet(conn)
    if tls is not None:
        conn.start_tls(*tls)
    reply = conn.command(check_line(f"USER {admin}"))
    if not reply.ok:
        return reply
    return conn.command(check_line(f"PASS {password}"))


def show(reply: Reply) -> None:
    if not reply.ok:
        print(f"msmp: {reply.text or 'error'}", file=sys.stderr)
    elif reply.lines is not None:
        for line in reply.lines:
            print(line)
    elif reply.text:
        print(reply.text)
    sys.stdout.flush()


def run_one(conn: Connection, words: list[str]) -> int:
    reply = conn.command(check_line(" ".join(complete(words))))
    show(reply)
    if words[0].upper() != "QUIT":
        with contextlib.suppress(ClientError):
            conn.command("QUIT")
    return EXIT_OK if reply.ok else EXIT_ERR


def run_interactive(conn: Connection) -> int:
    interactive = sys.stdin.isatty()
    if interactive:
        with contextlib.suppress(ImportError):
            import readline  # noqa: F401 (line editing and in-memory history for input())
    status = EXIT_OK
    while True:
        try:
            text = input(PROMPT) if interactive else sys.stdin.readline()
        except EOFError:
            text = ""
        if not text:  # EOF
            if interactive:
                print()
            with contextlib.suppress(ClientError):
                conn.command("QUIT")
            return status
        words = text.split()
        if not words:
            continue
        try:
            reply = conn.command(check_line(" ".join(complete(words))))
        except UsageError as exc:
            print(f"msmp: {exc}", file=sys.stderr)
            status = max(status, EXIT_USAGE)
            continue
        show(reply)
        if not reply.ok:
            status = max(status, EXIT_ERR)
        if words[0].upper() == "QUIT":
            return status


def main(argv: list[str] | None = None) -> None:
    try:
        args = docopt(
            __doc__, argv=argv, version=f"msmp (maildaemons) {VERSION}", options_first=True
        )
    except DocoptExit as exc:
        print(exc, file=sys.stderr)
        sys.exit(EXIT_USAGE)
    try:
        sys.exit(run(args))
    except ClientError as exc:
        print(f"msmp: {exc}", file=sys.stderr)
        sys.exit(EXIT_USAGE)
    except KeyboardInterrupt:
        print(file=sys.stderr)
        sys.exit(EXIT_USAGE)
    except BrokenPipeError:  # `msmp LIST | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(EXIT_OK)


def server(args: dict[str, Any]) -> tuple[str, int]:
    """Where msmpd is: -L and -P, else the config file's [msmpd] listen (its first address)
    and port, as msmpd itself reads them (-c, $MAILDAEMONS_CONF, the default file)."""
    try:
        settings = Settings("msmpd", read_config(args["--config"]))
        listen = settings.listen_addresses() if args["-L"] is None else [str(args["-L"])]
        port = str(args["-P"]) if args["-P"] is not None else settings.get("port")
    except ConfigError as exc:
        raise ClientError(str(exc)) from None
    host = listen[0] if listen else "127.0.0.1"
    try:
        return LOOPBACK.get(host, host), int(port)
    except ValueError:
        raise ClientError(f"the port must be a number, not {port!r}") from None


def run(args: dict[str, Any]) -> int:
    try:
        timeout = float(str(args["--timeout"]))
    except ValueError:
        raise ClientError("--timeout takes a number of seconds") from None
    host, port = server(args)
    words = [str(w) for w in args["COMMAND"] or []]
    if words:
        check_line(" ".join(words))
    tls = tls_settings(args, host)
    if words and words[0].upper() in NO_LOGIN_VERBS:
        conn = Connection(host, port, timeout)
        try:
            greet(conn)
            return run_one(conn, words)
        finally:
            conn.close()
    admin, password = credentials(args["-u"] if isinstance(args["-u"], str) else None)
    conn = Connection(host, port, timeout)
    try:
        reply = login(conn, admin, password, tls)
        if not reply.ok:
            hint = " (use --tls)" if tls is None and "STLS" in reply.text else ""
            print(f"msmp: login failed: {reply.text}{hint}", file=sys.stderr)
            return EXIT_ERR
        return run_one(conn, words) if words else run_interactive(conn)
    finally:
        conn.close()


def tls_settings(args: dict[str, Any], host: str) -> tuple[ssl.SSLContext, str] | None:
    """--tls: a verifying client context (the system's CAs, or --cafile's) and the name to check
    (the host msmp connects to)."""
    cafile = args.get("--cafile")
    if not args.get("--tls"):
        if cafile:
            raise ClientError("--cafile goes with --tls")
        return None
    try:
        context = ssl.create_default_context(cafile=str(cafile) if cafile else None)
    except (OSError, ssl.SSLError) as exc:
        raise ClientError(
            f"cannot read --cafile {cafile}: {getattr(exc, 'strerror', exc)}"
        ) from None
    return context, host


if __name__ == "__main__":
    main()
