"""BINARY content (RFC 3516): sections with their Content-Transfer-Encoding undone for FETCH
BINARY[...] and BINARY.SIZE[...] (4.1, 4.2), and binary parts made storable for APPEND (4.3).

What a section is, where RFC 3516 leaves room: a part that is neither multipart nor
message/rfc822 gives its body decoded (base64 and quoted-printable undone, 7bit, 8bit and
binary as they are; any other encoding is NO [UNKNOWN-CTE]). A multipart or message/rfc822 part
may only have an identity encoding (RFC 2045 6.4), so it is given as it is, nested parts
included. BINARY[] is the whole message; when the message itself is a single part in base64 or
quoted-printable, its body is decoded and its Content-Transfer-Encoding field says binary.

A Maildir holds messages with LF line ends (DESIGN.md "Storage"), which binary data does not
survive. A part appended with `Content-Transfer-Encoding: binary` is therefore stored in
base64, its field changed to match; FETCH BINARY of it gives back exactly the octets sent.
"""

from __future__ import annotations

import base64
import binascii

from imapd.message import MessageView, find_part
from imapd.mime import MAX_DEPTH, Entity
from imapd.mimefields import parse_encoding
from imapd.mimetext import decode_base64

IDENTITY = frozenset({"7BIT", "8BIT", "BINARY"})
CTE_FIELD = "CONTENT-TRANSFER-ENCODING"
BASE64_LINE = 57  # octets per base64 line: 76 characters (RFC 2045 6.8)


class UnknownEncoding(Exception):
    """The section's Content-Transfer-Encoding is one this server cannot undo."""


def section(message: MessageView, parts: tuple[int, ...]) -> bytes | None:
    """The decoded content of BINARY[parts]; None for a part that does not exist."""
    if not parts:
        return whole(message.root)
    node = find_part(message.root, parts)
    if node is None:
        return None
    if node.is_multipart or node.is_message:
        return node.body_bytes()
    return decoded_body(node)


def whole(root: Entity) -> bytes:
    if root.is_multipart or root.is_message:
        return root.buf[root.start : root.end]
    encoding = parse_encoding(root.first(CTE_FIELD))
    if encoding in IDENTITY:
        return root.buf[root.start : root.end]
    return header_with_encoding(root, "binary") + decoded_body(root)


def decoded_body(entity: Entity) -> bytes:
    encoding = parse_encoding(entity.first(CTE_FIELD))
    body = entity.body_bytes()
    if encoding in IDENTITY:
        return body
    if encoding == "BASE64":
        return decode_base64(body)
    if encoding == "QUOTED-PRINTABLE":
        return binascii.a2b_qp(body)
    raise UnknownEncoding(encoding)


def header_with_encoding(entity: Entity, encoding: str) -> bytes:
    """The entity's header with its Content-Transfer-Encoding field saying `encoding`."""
    lines = [f.lines for f in entity.fields if f.name != CTE_FIELD]
    lines.append(f"Content-Transfer-Encoding: {encoding}\r\n".encode())
    return b"".join(lines) + b"\r\n"


# -- APPEND (RFC 3516 4.3) ------------------------------------------------------------------


def storable(message: bytes) -> bytes:
    """`message` with every `Content-Transfer-Encoding: binary` part re-encoded in base64;
    unchanged when it has none."""
    root = MessageView(message).root
    binary = [e for e in leaves(root) if parse_encoding(e.first(CTE_FIELD)) == "BINARY"]
    if not binary:
        return message
    out = bytearray(message)
    for entity in sorted(binary, key=lambda e: e.start, reverse=True):
        body = entity.body_bytes()
        lines = [
            base64.b64encode(body[i : i + BASE64_LINE]) for i in range(0, len(body), BASE64_LINE)
        ]
        encoded = b"\r\n".join(lines) + (b"\r\n" if entity is root else b"")
        out[entity.start : entity.end] = header_with_encoding(entity, "base64") + encoded
    return bytes(out)


def leaves(root: Entity) -> list[Entity]:
    """The parts of a message that are neither multipart nor message/rfc822, in any order."""
    out = []
    stack = [root]
    while stack:
        entity = stack.pop()
        if entity.depth > MAX_DEPTH:
            continue
        if entity.is_multipart:
            stack.extend(entity.children)
        elif entity.is_message:
            stack.append(entity.inner)
        elif entity.end > entity.start:
            out.append(entity)
    return out
