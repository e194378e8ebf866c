"""One gateway session: the banner, the purpose string, the purpose carried out against the IMAP
server it names, and the one reply before the gateway closes (seed 000).

Deliberate differences from seed 000: responses of any size come back whole; only allowed IMAP
hosts are contacted; the mailbox is an IMAP name (INBOX when empty) unless join_mailbox_user;
`headers` of an empty mailbox is `3 OK FETCH completed (mailbox is empty)`; TERM ends a session
with one `NO` line; the bytes exchanged with the client go to mailstatd, as every daemon's do.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
import traceback

from common import service, turns
from common.config import Settings
from common.logs import SessionLog, escaped_bytes
from common.server import Handler
from imapd.gateway import replies
from imapd.gateway.client import ImapClient, command_arg, mailbox_arg, status_of
from imapd.gateway.purpose import Purpose, masked, parse_purpose, read_purpose
from imapd.gateway.replies import BANNER, GatewayError, no

LOG_EXCERPT = 512
LINGER = 2.0


class CountedSocket:
    """The client's socket, counting the bytes each way for mailstatd (LineIO counts them for
    the session protocols). Only what the gateway uses of a socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.bytes_in = 0
        self.bytes_out = 0

    def recv(self, size: int) -> bytes:
        data = self.sock.recv(size)
        self.bytes_in += len(data)
        return data

    def sendall(self, data: bytes) -> None:
        self.sock.sendall(data)
        self.bytes_out += len(data)

    def fileno(self) -> int:
        return self.sock.fileno()

    def settimeout(self, timeout: float | None) -> None:
        self.sock.settimeout(timeout)

    def shutdown(self, how: int) -> None:
        self.sock.shutdown(how)

    def close(self) -> None:
        self.sock.close()


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
            "1", b"LOGIN " + command_arg(purpose.user) + b" " + command_arg(purpose.password)
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
        # BODY[...] sets \Seen (RFC 3501 6.4.5), as seed 000's FETCH did; `peek` leaves it.
        body = "body.peek" if self.settings.get_bool("peek") else "body"
        if purpose.purpose == "headers":
            if exists == 0:  # differs from seed 000, which sent "FETCH 1:0"
                return replies.EMPTY_MAILBOX
            return self.fetch(client, f"1:{exists} ({body}[header.fields (from subject date)])")
        if int(purpose.msgnum) > exists:
            raise GatewayError(replies.no_such_message(purpose.msgnum))
        if purpose.purpose == "body":
            return self.fetch(client, f"{purpose.msgnum} {body}[TEXT]")
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
        excerpt = escaped_bytes(raw[:LOG_EXCERPT].replace(b"\r\n", b" | "))
        more = f" ... ({len(raw)} bytes)" if len(raw) > LOG_EXCERPT else ""
        self.log.info("IMAP Message Received = %s%s", excerpt.strip(), more)


def serve(conn: CountedSocket, settings: Settings, log: SessionLog, interrupt_fd: int) -> bytes:
    """Banner, purpose string, the IMAP work: the bytes to send back before closing."""
    conn.sendall(BANNER)
    raw = read_purpose(conn, settings.get_float("idle_timeout"), interrupt_fd)
    log.info("Command Received: %s", masked(raw))
    return Gateway(settings, log, interrupt_fd).perform(parse_purpose(raw))


def close_gently(conn: CountedSocket) -> None:
    """Half-close, then read what the client still sends until it closes (at most LINGER
    seconds): closing with unread input resets the connection and can destroy the reply."""
    with contextlib.suppress(OSError), turns.aside():
        conn.shutdown(socket.SHUT_WR)
        conn.settimeout(LINGER)
        deadline = time.monotonic() + LINGER
        while time.monotonic() < deadline and conn.recv(4096):
            pass
    conn.close()


def answer(conn: CountedSocket, settings: Settings, log: SessionLog, interrupt_fd: int) -> int:
    """Serve one CGI client to the end: its reply or one `NO` line, then a gentle close."""
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


def make_handler(state: service.MasterState) -> Handler:
    def handle(
        sock: socket.socket, address: str, number: int, interrupt_fd: int, tls: bool, via: str = ""
    ) -> int:
        conn = CountedSocket(sock)
        log = SessionLog(state.log, number, address)
        log.info(service.connect_line(tls, via))
        try:
            return answer(conn, state.settings, log, interrupt_fd)
        finally:
            sid = number if state.pooled else 0  # a pool worker's sessions share its pid
            state.stats.transfer(
                state.protocol.name, os.getpid(), conn.bytes_in, conn.bytes_out, sid
            )
            log.info("session end")

    return handle
