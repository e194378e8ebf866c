"""IMAP URLs (RFC 5092) naming a message or a part of one, as CATENATE uses them (RFC 4469 5):

    imap://[user[;AUTH=...]@]host[:port]/mailbox[;UIDVALIDITY=n]/;UID=n[/;SECTION=s][/;PARTIAL=p]
    /mailbox[;UIDVALIDITY=n]/;UID=n[/;SECTION=s][/;PARTIAL=p]        (a path on this server)
    ;UID=n[/;SECTION=s][/;PARTIAL=p]                                 (in the selected mailbox)

Percent-encoding is undone everywhere; the mailbox name is read as UTF-8 (RFC 5092 6), or as
modified UTF-7 when that is what it is (URLs written to RFC 2192). URLAUTH (RFC 4467) is not
offered, so a URL carrying one is refused. Anything malformed raises ValueError.
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass

from common.utf7 import decode_mutf7

_UIDVALIDITY = re.compile(r";UIDVALIDITY=([1-9][0-9]{0,9})\Z", re.IGNORECASE)
_SEGMENT = re.compile(r";(UID|SECTION|PARTIAL)=([^/]*)\Z", re.IGNORECASE)
_NUMBER = re.compile(r"[1-9][0-9]{0,9}\Z")
ORDER = ("UID", "SECTION", "PARTIAL")
_PARTIAL = re.compile(r"([0-9]{1,10})(?:\.([1-9][0-9]{0,9}))?\Z")


@dataclass(frozen=True, slots=True)
class MessageUrl:
    """What an IMAP URL names: ``mailbox`` None means the selected mailbox; ``section`` is an
    IMAP section spec ("" for the whole message); ``partial`` is (start, count or None)."""

    uid: int
    mailbox: str | None = None
    uidvalidity: int | None = None
    section: str = ""
    partial: tuple[int, int | None] | None = None
    user: str | None = None


def parse_message_url(text: str) -> MessageUrl:
    user = None
    if text[:7].lower() == "imap://":
        authority, slash, path = text[7:].partition("/")
        if not slash or not authority:
            raise ValueError("an IMAP URL needs a server and a path")
        userinfo, at, _host = authority.rpartition("@")
        if at:
            name, _sep, auth = userinfo.partition(";")
            if auth and not auth.upper().startswith("AUTH="):
                raise ValueError("bad userinfo")
            user = _unquote(name).decode("utf-8") if name else None
        path = "/" + path
    elif text.startswith("/") or text[:5].upper() == ";UID=":
        path = text
    else:
        raise ValueError("not an IMAP URL")
    return _message_path(path, user)


def _message_path(path: str, user: str | None) -> MessageUrl:
    pieces = path.split("/;")
    mailbox_ref = pieces[0].lstrip("/") if not path.startswith(";") else None
    segments = [";" + piece for piece in pieces[1:]]
    if path.startswith(";"):
        segments = [pieces[0], *segments]
    mailbox = uidvalidity = None
    if mailbox_ref is not None:
        found = _UIDVALIDITY.search(mailbox_ref)
        if found is not None:
            uidvalidity = int(found.group(1))
            mailbox_ref = mailbox_ref[: found.start()]
        if not mailbox_ref or ";" in mailbox_ref:
            raise ValueError("bad mailbox")
        mailbox = _mailbox_name(mailbox_ref)
    values: dict[str, str] = {}
    for segment in segments:  # ;UID=, then ;SECTION= and ;PARTIAL=, each at most once
        found = _SEGMENT.match(segment)
        if found is None:
            raise ValueError(f"unknown URL part {segment!r}")
        key = found.group(1).upper()
        if values and ORDER.index(key) <= ORDER.index(list(values)[-1]):
            raise ValueError("URL parts out of order")
        values[key] = found.group(2)
    if "UID" not in values or not _NUMBER.match(values["UID"]):
        raise ValueError("a message URL needs ;UID=")
    partial = None
    if "PARTIAL" in values:
        found = _PARTIAL.match(values["PARTIAL"])
        if found is None:
            raise ValueError("bad ;PARTIAL=")
        partial = (int(found.group(1)), int(found.group(2)) if found.group(2) else None)
    section = _unquote(values.get("SECTION", "")).decode("ascii", "replace")
    return MessageUrl(int(values["UID"]), mailbox, uidvalidity, section, partial, user)


def _mailbox_name(encoded: str) -> str:
    raw = _unquote(encoded)
    text = raw.decode("utf-8")
    if text.isascii() and "&" in text:
        try:
            return decode_mutf7(raw)
        except ValueError:
            return text
    return text


def _unquote(text: str) -> bytes:
    if re.search(r"%(?![0-9A-Fa-f]{2})", text):
        raise ValueError("bad percent-encoding")
    return urllib.parse.unquote_to_bytes(text)
