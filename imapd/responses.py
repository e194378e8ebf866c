"""IMAP response text: tagged and untagged lines, strings, literals, flag lists, capabilities.

Every client-visible string the IMAP server sends is built here (RFC 3501 section 7 and 9); the
string forms themselves (quoted, literal) come from imapd/strings.py.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterable

from common.version import VERSION
from imapd.parser import encode_mailbox
from imapd.strings import literal as literal  # re-exported: handlers write r.literal()

GREETING_NAME = f"maildaemons IMAP4rev1 server {VERSION} ready"
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

# Only what is complete is advertised (issue 6); each is proven by tests/imapd/test_imap_ext_*.py.
CAPABILITIES = (
    "IMAP4rev1",
    "IMAP4rev2",
    "LITERAL+",
    "SASL-IR",
    "AUTH=PLAIN",
    "AUTH=LOGIN",
    "ID",
    "ENABLE",
    "UTF8=ACCEPT",
    "IDLE",
    "NAMESPACE",
    "UNSELECT",
    "UIDPLUS",
    "MOVE",
    "CHILDREN",
    "SPECIAL-USE",
    "CREATE-SPECIAL-USE",
    "LIST-EXTENDED",
    "LIST-STATUS",
    "ESEARCH",
    "SORT",
    "SORT=DISPLAY",
    "THREAD=ORDEREDSUBJECT",
    "THREAD=REFERENCES",
    "ESORT",
    "CONTEXT=SEARCH",
    "CONTEXT=SORT",
    "SEARCHRES",
    "BINARY",
    "MULTIAPPEND",
    "CATENATE",
    "APPENDLIMIT",
    "STATUS=SIZE",
    "OBJECTID",
    "SAVEDATE",
    "UNAUTHENTICATE",
    "CONDSTORE",
    "QRESYNC",
    "QUOTA",
    "QUOTA=RES-STORAGE",
    "QUOTA=RES-MESSAGE",
    "COMPRESS=DEFLATE",
)
# Not listed again once the session compresses (RFC 4978: a second COMPRESS is refused).
ONCE_ONLY = frozenset({"COMPRESS=DEFLATE"})
# Not listed while a password may not be sent in clear; LOGINDISABLED is then (RFC 3501 6.2.3).
PLAINTEXT_AUTH = frozenset({"AUTH=PLAIN", "AUTH=LOGIN"})


class ImapError(Exception):
    """A command failed: sent as `tag NO [code] text` (or BAD)."""

    def __init__(self, text: str, code: str = "", status: str = "NO") -> None:
        super().__init__(text)
        self.text = text
        self.code = code
        self.status = status


def busy(reason: str) -> bytes:
    """The refusal at the session limits (common/server.py)."""
    if reason == "address":
        return b"* BYE Too many connections from your address, try again later\r\n"
    return b"* BYE Too many connections, try again later\r\n"


def bad(text: str) -> ImapError:
    return ImapError(text, status="BAD")


# Every session asks twice (greeting, LOGIN) with the same few settings: one text per state.
@functools.lru_cache(maxsize=64)
def capability_line(
    compressed: bool = False,
    starttls: bool = False,
    plaintext: bool = True,
    literal_plus: bool = True,
    append_limit: int | None = None,
) -> str:
    """The CAPABILITY list for a session's state: STARTTLS while TLS may start (RFC 3501
    6.2.1), LOGINDISABLED and no AUTH= when no password may be sent in clear; LITERAL- in place
    of LITERAL+ when non-synchronizing literals are limited (RFC 7888 5); APPENDLIMIT with the
    session's limit (RFC 7889 2)."""
    caps = []
    for capability in CAPABILITIES:
        if (compressed and capability in ONCE_ONLY) or (
            not plaintext and capability in PLAINTEXT_AUTH
        ):
            continue
        if capability == "LITERAL+" and not literal_plus:
            capability = "LITERAL-"
        elif capability == "APPENDLIMIT" and append_limit is not None:
            capability = f"APPENDLIMIT={append_limit}"
        caps.append(capability)
    if starttls:
        caps.append("STARTTLS")
    if not plaintext:
        caps.append("LOGINDISABLED")
    return " ".join(caps)


def tagged(tag: str, status: str, text: str, code: str = "") -> bytes:
    code_text = f"[{code}] " if code else ""
    return f"{tag} {status} {code_text}{text}\r\n".encode("utf-8", "replace")


def untagged(text: str | bytes) -> bytes:
    data = text.encode("utf-8", "replace") if isinstance(text, str) else text
    return b"* " + data + b"\r\n"


def mailbox(name: str, utf8: bool = False) -> bytes:
    return encode_mailbox(name, utf8)


def flag_list(flags: Iterable[str]) -> str:
    return "(" + " ".join(flags) + ")"


def internal_date(timestamp: float) -> str:
    """date-time of RFC 3501: "dd-Mon-yyyy hh:mm:ss +zzzz" in local time."""
    local = time.localtime(timestamp)
    offset = local.tm_gmtoff // 60
    sign = "+" if offset >= 0 else "-"
    offset = abs(offset)
    return (
        f'"{local.tm_mday:2d}-{MONTHS[local.tm_mon - 1]}-{local.tm_year:04d} '
        f"{local.tm_hour:02d}:{local.tm_min:02d}:{local.tm_sec:02d} "
        f'{sign}{offset // 60:02d}{offset % 60:02d}"'
    )


# Tagged completions and untagged texts used by several commands.
LOGGED_IN = "Logged in"
PERMANENT_TEXT = "Flags permitted"
AUTH_FAILED = ("Authentication failed", "AUTHENTICATIONFAILED")
# RFC 5530 PRIVACYREQUIRED, in Dovecot's words (with its ALERT for a LOGIN sent in clear).
PLAINTEXT_LOGIN_DISALLOWED = (
    "Plaintext authentication disallowed on non-secure (SSL/TLS) connections.",
    "PRIVACYREQUIRED",
)
PLAINTEXT_MECHANISM_DISABLED = ("Plaintext authentication disabled.", "PRIVACYREQUIRED")
CLEARTEXT_LOGIN_ALERT = (
    "BAD [ALERT] Plaintext authentication not allowed without SSL/TLS, but your client did it "
    "anyway. If anyone was listening, the password was exposed."
)
BEGIN_TLS = "Begin TLS negotiation now"
TLS_ACTIVE = "TLS is already active"
TLS_UNAVAILABLE = "TLS support isn't enabled"
BYE_LOGOUT = "maildaemons IMAP4rev1 server logging out"
BYE_TIMEOUT = "Autologout; idle for too long"
# ALERT: the user must be told why the connection ends (RFC 3501 7.1).
BYE_SHUTDOWN = "[ALERT] Server shutting down, try again later"
BYE_MAILBOX_DELETED = "[ALERT] The selected mailbox was deleted"
BYE_TOO_MANY_BAD = "Too many invalid commands"
BYE_INTERNAL = "Internal server error"
BYE_LITERAL = "Literal too large"
BYE_COMPRESSION = "Compressed data could not be decoded"
DONE_WITHOUT_IDLE = "DONE without IDLE"
LITERAL_TOO_LARGE = "[TOOBIG] Literal too large"
LITERAL_MINUS = "Non-synchronizing literals over 4096 octets need LITERAL+"
MESSAGE_TOO_LARGE = ("Message too large", "TOOBIG")
LINE_TOO_LONG = "Command line too long"
NO_SUCH_MAILBOX = ("Mailbox does not exist", "NONEXISTENT")
TRYCREATE = ("Mailbox does not exist", "TRYCREATE")
MAILBOX_EXISTS = ("Mailbox already exists", "ALREADYEXISTS")
INVALID_NAME = "Invalid mailbox name"
READ_ONLY = ("Mailbox is read-only", "READ-ONLY")
# A store whose files cannot be written (a read-only mount, permissions): RFC 5530 NOPERM.
UNWRITABLE = ("Mailbox is read-only: its files cannot be written", "NOPERM")
# A full file system or disk quota (RFC 5530 OVERQUOTA, Dovecot's wording).
NO_SPACE = ("Not enough disk space", "OVERQUOTA")
STORE_FAILED = ("Server error, try again later", "SERVERBUG")
MAILBOX_BUSY = ("Mailbox is busy, try again later", "INUSE")
EXPUNGE_ISSUED = ("Some of the messages were expunged meanwhile", "EXPUNGEISSUED")
