"""Decoding message text for SEARCH: charsets, Content-Transfer-Encodings (RFC 2045 6.7,
6.8) and RFC 2047 encoded words in header values. Every function is lenient and never raises:
what does not decode is replaced or dropped.

"Octet strings" are str holding one byte per character (bytes decoded as latin-1); see
`imapd.mime`.
"""

from __future__ import annotations

import binascii
import codecs
import functools
import re

_CHARSET_NAME = re.compile(r"[A-Za-z0-9_.:+\-]{1,40}")
_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([QqBb])\?([^?\s]*)\?=")
_QP_HEADER_ESC = re.compile(rb"=([0-9A-Fa-f]{2})")
_NOT_BASE64 = re.compile(rb"[^A-Za-z0-9+/]")


def to_octets(text: str) -> str:
    """Unicode text to an octet string of its UTF-8 encoding."""
    return text.encode("utf-8", "surrogatepass").decode("latin-1")


@functools.lru_cache(maxsize=64)
def text_codec(charset: str | None) -> str | None:
    """The Python text codec for a MIME charset name; None when unknown or not a text codec.
    US-ASCII maps to UTF-8, a superset that also reads 8-bit text mislabelled as ASCII."""
    if not charset or not _CHARSET_NAME.fullmatch(charset):
        return None
    try:
        info = codecs.lookup(charset)
    except LookupError:
        return None
    if not getattr(info, "_is_text_encoding", True):  # base64, rot13, zlib ...
        return None
    return "utf-8" if info.name == "ascii" else info.name


def decode_text(data: bytes, charset: str | None) -> str:
    """Decode bytes in a MIME charset (UTF-8 when unknown), replacing what does not decode."""
    try:
        return data.decode(text_codec(charset) or "utf-8", "replace")
    except (LookupError, ValueError, TypeError):  # idna/punycode raise whatever "errors" says
        return data.decode("utf-8", "replace")


def decode_transfer(data: bytes, encoding: str) -> bytes:
    """Undo a Content-Transfer-Encoding (RFC 2045 6.7, 6.8) leniently."""
    if encoding == "BASE64":
        return decode_base64(data)
    if encoding == "QUOTED-PRINTABLE":
        return binascii.a2b_qp(data)
    return data


def decode_base64(data: bytes) -> bytes:
    """Decode base64, ignoring characters outside the alphabet and bad padding (RFC 2045 6.8)."""
    try:
        return binascii.a2b_base64(data)
    except (binascii.Error, ValueError):
        pass
    clean = _NOT_BASE64.sub(b"", data)
    clean = clean[: len(clean) - 1] if len(clean) % 4 == 1 else clean
    try:
        return binascii.a2b_base64(clean + b"=" * (-len(clean) % 4))
    except (binascii.Error, ValueError):
        return b""


def header_text(value: str) -> str:
    """A header value (octet string) as Unicode: raw 8-bit read as UTF-8 (else windows-1252),
    then RFC 2047 encoded words decoded; whitespace between adjacent words dropped (6.2)."""
    raw = value.encode("latin-1", "replace")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("cp1252", "replace")
    if "=?" not in text:
        return text
    return _decode_words(text)


def _decode_words(text: str) -> str:
    """Decode RFC 2047 encoded words; runs of words in one charset are decoded together so that
    a character split across two words survives."""
    out: list[str] = []
    run: bytearray = bytearray()
    run_charset: str | None = None
    pos = 0
    for m in _ENCODED_WORD.finditer(text):
        gap = text[pos : m.start()]
        charset = m.group(1).split("*", 1)[0]  # RFC 2231 5: charset*language
        adjacent = run_charset is not None and not gap.strip(" \t\r\n")
        if not adjacent or charset.lower() != run_charset:
            if run_charset is not None:
                out.append(decode_text(bytes(run), run_charset))
            run, run_charset = bytearray(), charset.lower()
            if not adjacent:
                out.append(gap)
        run += _word_bytes(m.group(2), m.group(3))
        pos = m.end()
    if run_charset is not None:
        out.append(decode_text(bytes(run), run_charset))
    out.append(text[pos:])
    return "".join(out)


def _word_bytes(kind: str, payload: str) -> bytes:
    """The octets of one encoded word's text, "B" or "Q" encoding (RFC 2047 4)."""
    data = payload.encode("latin-1", "replace")
    if kind in "Bb":
        return decode_base64(data)
    data = data.replace(b"_", b" ")
    return _QP_HEADER_ESC.sub(lambda m: bytes([int(m.group(1), 16)]), data)
