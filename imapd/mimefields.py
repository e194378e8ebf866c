"""Content-* header values (RFC 2045 5.1 and 6.1, RFC 2183, RFC 3282, RFC 2231): media type
and parameters, disposition, language, transfer encoding. Values are octet strings (see
`imapd.mime`); an RFC 2231 value in a known charset becomes UTF-8. Lenient, never raises.
"""

from __future__ import annotations

import re
from typing import NamedTuple
from urllib.parse import unquote_to_bytes

from imapd.mimetext import decode_text, text_codec, to_octets

_MIME_ATOM = r"[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]+"  # RFC 2045 5.1 token
_TOKEN = re.compile(_MIME_ATOM)
_CTYPE = re.compile(f"({_MIME_ATOM})[ \t]*/[ \t]*({_MIME_ATOM})")
_COMMENT = re.compile(r"\((?:[^()\\]|\\.)*\)")
_SECTION = re.compile(r"(.+)\*([0-9]{1,3})")  # RFC 2231 3: name*N
_QUOTED = re.compile(r'((?:[^"\\]|\\.)*)(?:"|\\?\Z)', re.DOTALL)  # quoted-string body
_QUOTED_PAIR = re.compile(r"\\(.)", re.DOTALL)


class ContentType(NamedTuple):
    """Content-Type (RFC 2045 5.1): upper-case type and subtype, parameters with lower-case
    names in header order (RFC 2231 sections already joined)."""

    type: str
    subtype: str
    params: tuple[tuple[str, str], ...]


DEFAULT_TEXT = ContentType("TEXT", "PLAIN", (("charset", "us-ascii"),))  # RFC 2045 5.2
DEFAULT_DIGEST = ContentType("MESSAGE", "RFC822", ())  # RFC 2046 5.1.5
OPAQUE = ContentType("APPLICATION", "OCTET-STREAM", ())


def strip_comments(text: str) -> str:
    """Remove RFC 5322 comments (innermost first, so nesting works) and surrounding WSP."""
    if "(" not in text:
        return text.strip(" \t")
    for _ in range(32):  # bounded: pathological nesting stays as it is
        stripped = _COMMENT.sub(" ", text)
        if stripped == text:
            break
        text = stripped
    return text.strip(" \t")


def parse_content_type(value: str | None, in_digest: bool) -> ContentType:
    """Parse Content-Type (RFC 2045 5.1); absent or invalid gives the default (RFC 2045 5.2,
    RFC 2046 5.1.5). A text type without a charset gets ("charset" "us-ascii") appended."""
    default = DEFAULT_DIGEST if in_digest else DEFAULT_TEXT
    if value is None:
        return default
    head, _, rest = value.partition(";")
    m = _CTYPE.fullmatch(strip_comments(head))
    if m is None:
        return default
    ctype, subtype = m.group(1).upper(), m.group(2).upper()
    params = parse_params(";" + rest if rest else "")
    if ctype == "TEXT" and not any(name == "charset" for name, _ in params):
        params.append(("charset", "us-ascii"))
    return ContentType(ctype, subtype, tuple(params))


def parse_disposition(value: str | None) -> tuple[str, list[tuple[str, str]]] | None:
    """Parse Content-Disposition (RFC 2183 2): (type as written, parameters), None if absent."""
    if value is None:
        return None
    head, _, rest = value.partition(";")
    kind = strip_comments(head)
    if not kind or not _TOKEN.fullmatch(kind):
        return None
    return kind, parse_params(";" + rest if rest else "")


def parse_language(value: str | None) -> list[str]:
    """Content-Language (RFC 3282): the comma-separated language tags."""
    if value is None:
        return []
    return [tag for tag in (strip_comments(t) for t in value.split(",")) if tag]


def parse_encoding(value: str | None) -> str:
    """Content-Transfer-Encoding (RFC 2045 6.1), upper-case; absent or invalid is "7BIT"."""
    if value is None:
        return "7BIT"
    token = strip_comments(value)
    return token.upper() if _TOKEN.fullmatch(token) else "7BIT"


def parse_params(text: str) -> list[tuple[str, str]]:
    """Parse `; name=value` parameters (RFC 2045 5.1) and join RFC 2231 sections."""
    raw: list[tuple[str, str]] = []
    pos, size = 0, len(text)
    while pos < size:
        semi = text.find(";", pos)
        if semi < 0:
            break
        pos, pair = _read_param(text, semi + 1)
        if pair is not None:
            raw.append(pair)
    return _join_rfc2231(raw)


def _read_param(text: str, pos: int) -> tuple[int, tuple[str, str] | None]:
    """Read one `name=value` after a ";"; return (offset after it, pair or None)."""
    semi = text.find(";", pos)
    stop = len(text) if semi < 0 else semi
    eq = text.find("=", pos, stop)  # bounded by the next ";": linear on ";;;;..."
    if eq < 0:
        return stop, None
    name = strip_comments(text[pos:eq]).lower()
    pos = eq + 1
    while pos < len(text) and text[pos] in " \t":
        pos += 1
    if pos < len(text) and text[pos] == '"':
        m = _QUOTED.match(text, pos + 1)  # always matches; an unclosed quote runs to the end
        value = _QUOTED_PAIR.sub(r"\1", m.group(1)) if m else ""
        pos = m.end() if m else stop
    else:
        end = text.find(";", pos)
        end = len(text) if end < 0 else end
        value, pos = strip_comments(text[pos:end]), end
    if not name or not _TOKEN.fullmatch(name.rstrip("*")):
        return pos, None
    return pos, (name, value)


def _join_rfc2231(raw: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Join `name*0*=` ... sections and decode `charset'lang'%XX` values (RFC 2231 3, 4).
    An extended value wins over a plain one of the same name; the first position is kept."""
    order: dict[str, None] = {}  # an ordered set
    plain: dict[str, str] = {}
    sections: dict[str, dict[int, tuple[str, bool]]] = {}
    for name, value in raw:
        encoded = name.endswith("*")
        stem = name[:-1] if encoded else name
        m = _SECTION.fullmatch(stem)
        if m is None and not encoded:
            plain.setdefault(name, value)
            order.setdefault(name)
            continue
        base, index = (m.group(1), int(m.group(2))) if m else (stem, 0)
        sections.setdefault(base, {}).setdefault(index, (value, encoded))
        order.setdefault(base)
    return [
        (name, _rfc2231_value(sections[name]) if name in sections else plain[name])
        for name in order
    ]


def _rfc2231_value(parts: dict[int, tuple[str, bool]]) -> str:
    """Decode joined RFC 2231 sections into an octet string holding UTF-8 (or the raw octets
    when no known charset is named)."""
    charset: str | None = None
    data = bytearray()
    first = min(parts)
    for index in sorted(parts):
        value, encoded = parts[index]
        if index == first and encoded and value.count("'") >= 2:
            charset, _lang, value = value.split("'", 2)
        if encoded:
            data += unquote_to_bytes(value.encode("latin-1"))
        else:
            data += value.encode("latin-1")
    if text_codec(charset) is None:
        return bytes(data).decode("latin-1")
    return to_octets(decode_text(bytes(data), charset))
