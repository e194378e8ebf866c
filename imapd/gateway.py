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
"""

from __future__ import annotations

import socket
import sys
from dataclasses import dataclass

from docopt import docopt

from common import service
from common.config import Settings
from common.logs import SessionLog
from common.server import Handler
from common.version import VERSION
from imapd.gwclient import GatewayError, ImapClient, astring, status_of

BANNER = b"OK IMAP daemon client ready (DMIS Rulez!)...\n"
MAX_PURPOSE = 1024
PURPOSES = ("headers", "body", "delete")
LOG_EXCERPT = 512


@dataclass(frozen=True)
class Purpose:
    """One parsed purpose string (seed 000's This_Session[0..5])."""

    purpose: str
    msgnum: str
    host: str
    user: str
    password: str
    mailbox: str



def masked(raw: bytes) -> str:
    """The purpose string for the log with the password replaced (seed 000 logged it in clear)."""
    text = raw.decode("utf-8", "replace")
    fields = text.split("#", 4)
    if len(fields) == 5:
        _password, sep, mailbox = fields[4].rpartition("#")
        fields[4] = "****" + sep + mailbox if sep else "****"
    return "#".join(fields)[:MAX_PURPOSE] + "$"


def no(reason: str) -> bytes:
    return f"NO {reason}\n".encode()


def read_purpose(conn: socket.socket) -> bytes:
    """Bytes up to `$`, which may arrive in any number of segments; at most MAX_PURPOSE."""
    data = b""
    while b"$" not in data:
        if len(data) > MAX_PURPOSE:
            raise GatewayError("purpose string too long or not terminated by $")
        try:
            chunk = conn.recv(MAX_PURPOSE + 1 - len(data))
        except TimeoutError:
            raise GatewayError("timed out waiting for the purpose string") from None
        if not chunk:
            raise GatewayError("connection closed before the purpose string ended with $")
        data += chunk
    return data[: data.index(b"$")]


def parse_purpose(raw: bytes) -> Purpose:
    """`purpose#msgnum#host#user#pass#mailbox`: the password, in the middle, may hold `#`."""
    text = raw.decode("utf-8", "replace").strip("\r\n ")
    head = text.split("#", 4)
    if len(head) < 5 or "#" not in head[4]:
        raise GatewayError("missing fields: expected purpose#msgnum#host#user#pass#mailbox$")
    password, _, mailbox = head[4].rpartition("#")
    purpose = Purpose(head[0].strip().lower(), head[1].strip(), head[2].strip(), head[3],
                      password, mailbox.strip())
    if purpose.purpose not in PURPOSES:
        raise GatewayError(f"unknown purpose {purpose.purpose[:40]!r}")
    if purpose.purpose != "headers" and not (purpose.msgnum.isdigit() and int(purpose.msgnum)):
        raise GatewayError("message number must be a positive number")
    if not purpose.user:
        raise GatewayError("missing user")
    return purpose


class Gateway:
    """Carries out one purpose against the IMAP server it names."""

    def __init__(self, settings: Settings, log: SessionLog) -> None:
        self.settings = settings
        self.log = log

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
            raise GatewayError(f"IMAP host {purpose.host[:64]!r} not allowed")
        client = ImapClient(purpose.host, self.settings.get_int("imap_port"),
                            self.settings.get_float("imap_timeout"))
        try:
            self.received(client.greeting())
            self.login(client, purpose)
            exists = self.select(client, purpose)
            result = self.act(client, purpose, exists)
            raw, _ = client.command("4" if purpose.purpose != "delete" else "5", b"LOGOUT")
            self.received(raw)
            return result
        finally:
            client.close()

    def login(self, client: ImapClient, purpose: Purpose) -> None:
        raw, done = client.command("1", b"LOGIN " + astring(purpose.user) + b" "
                                   + astring(purpose.password))
        self.received(raw)
        if status_of(done, "1") != "OK":
            raise GatewayError("login refused")

    def select(self, client: ImapClient, purpose: Purpose) -> int:
        raw, done = client.command("2", b"SELECT " + astring(self.mailbox_name(purpose)))
        self.received(raw)
        if status_of(done, "2") != "OK":
            raise GatewayError("mailbox missing")
        for line in raw.split(b"\r\n"):
            fields = line.split()
            if len(fields) == 3 and fields[0] == b"*" and fields[2].upper() == b"EXISTS":
                return int(fields[1])
        return 0

    def act(self, client: ImapClient, purpose: Purpose, exists: int) -> bytes:
        if purpose.purpose == "headers":
            if exists == 0:
                return b"3 OK FETCH completed (mailbox is empty)\r\n"
            return self.fetch(client, f"1:{exists} (body[header.fields (from subject date)])")
        if int(purpose.msgnum) > exists:
            raise GatewayError(f"message {purpose.msgnum} does not exist")
        if purpose.purpose == "body":
            return self.fetch(client, f"{purpose.msgnum} body[TEXT]")
        store, done = client.command("3", f"STORE {purpose.msgnum} +FLAGS (\\Deleted)".encode())
        if status_of(done, "3") != "OK":
            raise GatewayError(f"message {purpose.msgnum} could not be deleted")
        expunge, done = client.command("4", b"EXPUNGE")
        if status_of(done, "4") != "OK":
            raise GatewayError(f"message {purpose.msgnum} could not be expunged")
        return store + expunge

    def fetch(self, client: ImapClient, what: str) -> bytes:
        raw, done = client.command("3", b"FETCH " + what.encode())
        if status_of(done, "3") != "OK" or b" FETCH " not in raw:
            raise GatewayError("message does not exist")
        return raw

    def received(self, raw: bytes) -> None:
        excerpt = raw[:LOG_EXCERPT].decode("utf-8", "replace").replace("\r\n", " | ")
        more = f" ... ({len(raw)} bytes)" if len(raw) > LOG_EXCERPT else ""
        self.log.info("IMAP Message Received = %s%s", excerpt.strip(), more)


def make_handler(state: service.MasterState) -> Handler:
    def handle(conn: socket.socket, address: str, number: int, interrupt_fd: int) -> int:
        settings = state.settings
        log = SessionLog(state.log, number, address)
        conn.settimeout(settings.get_float("idle_timeout"))
        try:
            conn.sendall(BANNER)
            raw = read_purpose(conn)
            log.info("Command Received: %s", masked(raw))
            purpose = parse_purpose(raw)
            reply = Gateway(settings, log).perform(purpose)
        except GatewayError as exc:
            log.info("refused: %s", exc)
            reply = no(str(exc))
        except OSError:
            log.info("client went away")
            return 0
        try:
            conn.sendall(reply)
            conn.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        finally:
            conn.close()
        return 0

    return handle


def busy_reply(reason: str) -> bytes:
    return no("too many connections, try again later")


PROTOCOL = service.Protocol(
    name="imapgw", daemon="imapgw", make_handler=make_handler, busy_reply=busy_reply,
    users_key=None,
    flags={"-l": "listen", "-p": "port", "--imap-port": "imap_port",
           "--imap-host-allow": "imap_host_allow", "--join-mailbox-user": "join_mailbox_user"},
    int_keys=("port", "max_children", "max_per_address", "imap_port"),
    float_keys=("shutdown_grace", "imap_timeout", "idle_timeout"),
)


def main(argv: list[str] | None = None) -> None:
    args = docopt(__doc__, argv=argv, version=f"imapgw (maildaemons) {VERSION}")
    sys.exit(service.main(PROTOCOL, args))


if __name__ == "__main__":
    main()
