"""imapgw: the 4711 purpose-string gateway of seed 000, faithful on the wire and safe inside.

Usage:
  imapgw [options]
  imapgw -h | --help
  imapgw -v | --version

Options:
  -h --help             Show this help and exit.
  -v --version          Show the version and exit.
  -f --foreground       Stay attached and log to stderr (tests, systemd Type=simple).
  -c FILE --config=FILE
                        Config file (default /etc/maildaemons/maildaemons.conf).
  -l ADDR               Address to listen on; '*' is every interface, v4 and v6 (default *).
  -p PORT               Port to listen on (default 4711).
  --imap-port=PORT      Port of the IMAP server a purpose string names (default 143).
  --imap-host-allow=HOSTS
                        Comma- or space-separated hosts a purpose string may name
                        (default "127.0.0.1 localhost").
  --join-mailbox-user   Select "<mailbox>/<user>" as the seed did, not the mailbox name.
  -d DIR                Maildir base (shared setting; the gateway itself reads no mail).
  --users=FILE          Users file (shared setting; the IMAP server checks passwords).
  --state-dir=DIR       State directory.
  --pidfile=FILE        Pidfile (default <run_dir>/imapgw.pid).
  --stats-socket=PATH   mailstatd's socket (default <run_dir>/mailstatd.sock).
  --log=TARGET          Log to 'syslog', 'stderr' or a file path.

Web CGI clients ("recvcgi") connect, read `OK IMAP daemon client ready (DMIS Rulez!)...`, send
`purpose#msgnum#host#user#pass#mailbox$` and get the IMAP server's response, or one line
`NO <reason>`, before the gateway closes. Purposes: headers, body, delete.

Deliberate differences from seed 000: TERM stops it cleanly; the purpose string may arrive in
pieces; responses of any size come back whole (literals are read by length, not by scanning for
"OK FETCH"); the password is masked in the log; every failure is one `NO` line; only allowed IMAP
hosts are contacted; the mailbox is an IMAP name (INBOX when empty) unless --join-mailbox-user;
`headers` of an empty mailbox is `3 OK FETCH completed (mailbox is empty)`.
"""

from __future__ import annotations

import contextlib
import socket
import sys
import time
import traceback
from dataclasses import dataclass

from docopt import docopt

from common import service
from common.config import Settings
from common.logs import SessionLog
from common.server import Handler
from common.utf7 import encode_mutf7
from common.version import VERSION
from imapd import gwclient as replies
from imapd.gwclient import BANNER, GatewayError, ImapClient, astring, no, status_of, wait_readable

MAX_PURPOSE = 1024  # the whole purpose string, its `$` included (seed 000 read 1024 bytes once)
PURPOSES = ("headers", "body", "delete")
LOG_EXCERPT = 512
LINGER = 2.0


@dataclass(frozen=True)
class Purpose:
    """One parsed purpose string (seed 000's This_Session[0..5])."""

    purpose: str
    msgnum: str
    host: str
    user: str
    password: str
    mailbox: str


def printable(text: str) -> str:
    """Control characters escaped, so a client cannot forge or split a log line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def masked(raw: bytes) -> str:
    """The purpose string for the log, password masked (seed 000 logged it in clear).

    Only a string with every field, and a number (or nothing) where the number goes, shows its
    user, host and mailbox: when a field is missing nobody knows which one is the password.
    """
    fields = raw.decode("utf-8", "replace").split("#")
    if len(fields) < 6 or not (fields[1].strip() == "" or fields[1].strip().isdigit()):
        shown = fields[0] + "#****" if len(fields) > 1 else fields[0]
    else:
        shown = "#".join([*fields[:4], "****", fields[-1]])
    return printable(shown)[:MAX_PURPOSE] + "$"


def read_purpose(conn: socket.socket, timeout: float, interrupt_fd: int | None = None) -> bytes:
    """Bytes before the `$`, which may arrive in any number of segments; at most MAX_PURPOSE
    bytes with the `$`. Bytes after the `$` are ignored (a CGI may end with a newline)."""
    data = b""
    while b"$" not in data:
        if len(data) >= MAX_PURPOSE:
            raise GatewayError(replies.TOO_LONG)
        if not wait_readable(conn, interrupt_fd, timeout):
            raise GatewayError(replies.CLIENT_TIMEOUT)
        try:
            chunk = conn.recv(MAX_PURPOSE - len(data))
        except TimeoutError:
            raise GatewayError(replies.CLIENT_TIMEOUT) from None
        if not chunk:
            raise GatewayError(replies.CLIENT_EOF)
        data += chunk
    return data[: data.index(b"$")]


def parse_purpose(raw: bytes) -> Purpose:
    """`purpose#msgnum#host#user#pass#mailbox`: the password, in the middle, may hold `#`."""
    text = raw.decode("utf-8", "replace").strip("\r\n ")
    head = text.split("#", 4)
    if len(head) < 5 or "#" not in head[4]:
        raise GatewayError(replies.BAD_FIELDS)
    password, _, mailbox = head[4].rpartition("#")
    name, msgnum = head[0].strip().lower(), head[1].strip()
    if name not in PURPOSES:
        raise GatewayError(replies.unknown_purpose(name))
    if name != "headers":
        # isascii: "\u00b2".isdigit() is true and int() refuses it; str(int()): no leading zeros
        if not (msgnum.isascii() and msgnum.isdigit() and int(msgnum)):
            raise GatewayError(replies.BAD_MSGNUM)
        msgnum = str(int(msgnum))
    purpose = Purpose(name, msgnum, head[2].strip(), head[3], password, mailbox.strip())
    if not purpose.host:
        raise GatewayError(replies.MISSING_HOST)
    if not purpose.user:
        raise GatewayError(replies.MISSING_USER)
    return purpose


class Gateway:
    """Carries out one purpose against the IMAP server it names."""

    def __init__(
        self, settings: Settings, log: SessionLog, interrupt_fd: int | None = None
    ) -> None:
        self.settings = settings
        self.log = log
        self.interrupt_fd = interrupt_fd

    def allowed_host(self, host: str) -> bool:
        allowed = self.settings.get("imap_host_allow").replace(",", " ").lower().split()
        return host.lower() in allowed

    def mailbox_name(self, purpose: Purpose) -> str:
        name = purpose.mailbox or "INBOX"
        if self.settings.get_bool("join_mailbox_user"):
            return f"{name}/{purpose.user}"
        return name

    def perform(self, purpose: Purpose) -> bytes:
        if not self.allowed_host(purpose.host):
            raise GatewayError(replies.host_not_allowed(purpose.host))
        client = ImapClient(
            purpose.host,
            self.settings.get_int("imap_port"),
            self.settings.get_float("imap_timeout"),
            self.interrupt_fd,
        )
        try:
            self.received(client.greeting())
            self.login(client, purpose)
            exists = self.select(client, purpose)
            result = self.act(client, purpose, exists)
            self.logout(client, "4" if purpose.purpose != "delete" else "5")
            return result
        finally:
            client.close()

    def login(self, client: ImapClient, purpose: Purpose) -> None:
        raw, done = client.command(
            "1", b"LOGIN " + astring(purpose.user) + b" " + astring(purpose.password)
        )
        self.received(raw)
        if status_of(done, "1") != "OK":
            raise GatewayError(replies.LOGIN_REFUSED)

    def select(self, client: ImapClient, purpose: Purpose) -> int:
        raw, done = client.command("2", b"SELECT " + mailbox_arg(self.mailbox_name(purpose)))
        self.received(raw)
        if status_of(done, "2") != "OK":
            raise GatewayError(replies.MAILBOX_MISSING)
        for line in raw.split(b"\r\n"):
            fields = line.split()
            if (
                len(fields) == 3
                and fields[0] == b"*"
                and fields[2].upper() == b"EXISTS"
                and fields[1].isdigit()
            ):
                return int(fields[1])
        return 0

    def act(self, client: ImapClient, purpose: Purpose, exists: int) -> bytes:
        if purpose.purpose == "headers":
            if exists == 0:  # differs from seed 000, which sent "FETCH 1:0"
                return replies.EMPTY_MAILBOX
            return self.fetch(client, f"1:{exists} (body[header.fields (from subject date)])")
        if int(purpose.msgnum) > exists:
            raise GatewayError(replies.no_such_message(purpose.msgnum))
        if purpose.purpose == "body":
            return self.fetch(client, f"{purpose.msgnum} body[TEXT]")
        return self.delete(client, purpose.msgnum)

    def fetch(self, client: ImapClient, what: str) -> bytes:
        raw, done = client.command("3", b"FETCH " + what.encode())
        if status_of(done, "3") != "OK" or b" FETCH " not in raw:
            raise GatewayError(replies.no_such_message(what.split()[0]))
        return raw

    def delete(self, client: ImapClient, msgnum: str) -> bytes:
        """STORE +FLAGS \\Deleted, then EXPUNGE: both responses go to the client."""
        store, done = client.command("3", f"STORE {msgnum} +FLAGS (\\Deleted)".encode())
        self.received(store)
        if status_of(done, "3") != "OK":
            raise GatewayError(replies.not_deleted(msgnum))
        expunge, done = client.command("4", b"EXPUNGE")
        self.received(expunge)
        if status_of(done, "4") != "OK":
            raise GatewayError(replies.not_expunged(msgnum))
        return store + expunge

    def logout(self, client: ImapClient, tag: str) -> None:
        """The result is already in hand: a server that hangs up here loses the client nothing."""
        try:
            raw, _ = client.command(tag, b"LOGOUT")
        except GatewayError as exc:
            self.log.info("LOGOUT failed: %s", exc)
            return
        self.received(raw)

    def received(self, raw: bytes) -> None:
        excerpt = printable(raw[:LOG_EXCERPT].decode("utf-8", "replace").replace("\r\n", " | "))
        more = f" ... ({len(raw)} bytes)" if len(raw) > LOG_EXCERPT else ""
        self.log.info("IMAP Message Received = %s%s", excerpt.strip(), more)


def mailbox_arg(name: str) -> bytes:
    """SELECT's argument. A non-ASCII name cannot be on the wire already, so it is encoded to
    modified UTF-7 (RFC 3501 5.1.3); an ASCII one goes as given, as seed 000 sent it."""
    if name.isascii():
        return astring(name)
    return astring(encode_mutf7(name).decode("ascii"))


def serve(conn: socket.socket, settings: Settings, log: SessionLog, interrupt_fd: int) -> bytes:
    """Banner, purpose string, the IMAP work: the bytes to send back before closing."""
    conn.sendall(BANNER)
    raw = read_purpose(conn, settings.get_float("idle_timeout"), interrupt_fd)
    log.info("Command Received: %s", masked(raw))
    return Gateway(settings, log, interrupt_fd).perform(parse_purpose(raw))


def close_gently(conn: socket.socket) -> None:
    """Half-close, then read what the client still sends until it closes (at most LINGER
    seconds): closing with unread input resets the connection and can destroy the reply."""
    with contextlib.suppress(OSError):
        conn.shutdown(socket.SHUT_WR)
        conn.settimeout(LINGER)
        deadline = time.monotonic() + LINGER
        while time.monotonic() < deadline and conn.recv(4096):
            pass
    conn.close()


def make_handler(state: service.MasterState) -> Handler:
    def handle(conn: socket.socket, address: str, number: int, interrupt_fd: int) -> int:
        settings = state.settings
        log = SessionLog(state.log, number, address)
        conn.settimeout(settings.get_float("idle_timeout"))  # bounds each send to the client
        code = 0
        try:
            reply = serve(conn, settings, log, interrupt_fd)
        except GatewayError as exc:
            log.info("refused: %s", exc)
            reply = no(str(exc))
        except OSError:
            log.info("client went away")
            conn.close()
            return 0
        except Exception:
            log.error("internal error: %s", traceback.format_exc().replace("\n", " | "))
            reply, code = no(replies.INTERNAL), 1
        with contextlib.suppress(OSError):
            conn.sendall(reply)
        close_gently(conn)
        return code

    return handle


def busy_reply(reason: str) -> bytes:
    return no(replies.BUSY)


PROTOCOL = service.Protocol(
    name="imapgw",
    daemon="imapgw",
    make_handler=make_handler,
    busy_reply=busy_reply,
    users_key=None,
    flags={
        "-l": "listen",
        "-p": "port",
        "--imap-port": "imap_port",
        "--imap-host-allow": "imap_host_allow",
        "--join-mailbox-user": "join_mailbox_user",
    },
)


def main(argv: list[str] | None = None) -> None:
    args = docopt(__doc__, argv=argv, version=f"imapgw (maildaemons) {VERSION}")
    sys.exit(service.main(PROTOCOL, args))


if __name__ == "__main__":
    main()
