"""Modified UTF-7 for IMAP mailbox names (RFC 3501 section 5.1.3).

Printable US-ASCII other than "&" stands for itself, "&" is written "&-", and every other run of
characters is UTF-16BE, base64-encoded with "," instead of "/" and without padding, between "&"
and "-". Decoding is strict: a name that another server could spell differently (printable ASCII
inside a shifted run, non-zero padding bits, an unpaired surrogate, control or 8-bit bytes) is
invalid, so one mailbox has exactly one wire form.
"""

from __future__ import annotations

import base64
import binascii
import re

__all__ = ["decode_mutf7", "encode_mutf7"]

# Printable ASCII except "&": the characters that represent themselves.
_DIRECT_RE = re.compile(rb"[\x20-\x25\x27-\x7e]*")
_DIRECT_STR_RE = re.compile(r"[\x20-\x25\x27-\x7e]+")
_B64_RE = re.compile(rb"[A-Za-z0-9+,]*")


def decode_mutf7(data: bytes) -> str:
    """Decode a modified UTF-7 mailbox name (RFC 3501 5.1.3); raise ValueError if invalid."""
    match = _DIRECT_RE.match(data)
    if match is not None and match.end() == len(data):
        return data.decode("ascii")
    out: list[str] = []
    pos = 0
    size = len(data)
    while pos < size:
        match = _DIRECT_RE.match(data, pos)
        end = match.end() if match is not None else pos
        if end > pos:
            out.append(data[pos:end].decode("ascii"))
            pos = end
            continue
        if data[pos] != 0x26:  # not "&": a control or 8-bit byte
            raise ValueError("Mailbox name is not valid modified UTF-7")
        pos = _decode_shifted(data, pos + 1, out)
    return "".join(out)


def _decode_shifted(data: bytes, pos: int, out: list[str]) -> int:
    """Decode one "&...-" run starting after the "&"; append it to out, return the next index."""
    match = _B64_RE.match(data, pos)
    end = match.end() if match is not None else pos
    if end >= len(data) or data[end] != 0x2D:  # "-"
        raise ValueError("Mailbox name is not valid modified UTF-7")
    chunk = data[pos:end]
    if not chunk:
        out.append("&")
        return end + 1
    text = _decode_base64_utf16(chunk)
    # RFC 3501 5.1.3: printable US-ASCII MUST be represented by itself.
    if any(0x20 <= ord(char) <= 0x7E for char in text) or _encode_run(text) != chunk:
        raise ValueError("Mailbox name is not valid modified UTF-7")
    out.append(text)
    return end + 1


def _decode_base64_utf16(chunk: bytes) -> str:
    """Decode the modified base64 of one shifted run into text."""
    padded = chunk.replace(b",", b"/") + b"=" * (-len(chunk) % 4)
    try:
        raw = base64.b64decode(padded, validate=True)
        if len(raw) % 2:
            raise ValueError("odd UTF-16 length")
        return raw.decode("utf-16-be")
    except (binascii.Error, ValueError):
        raise ValueError("Mailbox name is not valid modified UTF-7") from None


def _encode_run(text: str) -> bytes:
    """Modified base64 of the UTF-16BE form of text, without "&", "-" or padding."""
    encoded = base64.b64encode(text.encode("utf-16-be"))
    return encoded.rstrip(b"=").replace(b"/", b",")


def encode_mutf7(name: str) -> bytes:
    """Encode a mailbox name as modified UTF-7 (RFC 3501 5.1.3)."""
    if "&" not in name and _DIRECT_STR_RE.fullmatch(name) is not None:
        return name.encode("ascii")
    out: list[bytes] = []
    pos = 0
    size = len(name)
    while pos < size:
        match = _DIRECT_STR_RE.match(name, pos)
        if match is not None:
            out.append(match.group().encode("ascii"))
            pos = match.end()
        elif name[pos] == "&":
            out.append(b"&-")
            pos += 1
        else:
            end = pos + 1
            while end < size and not 0x20 <= ord(name[end]) <= 0x7E:
                end += 1
            out.append(b"&" + _encode_run(name[pos:end]) + b"-")
            pos = end
    return b"".join(out)
