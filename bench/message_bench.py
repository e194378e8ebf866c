"""Rough speed of imapd.message on a typical 4 KB message (not a test; prints its figures).

    .venv/bin/python bench/message_bench.py [N]

Each call uses a fresh MessageView, as a FETCH 1:* ENVELOPE over a mailbox does. The best of
five runs is printed, so a busy machine disturbs the figure less.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from imapd.message import MessageView


def typical_message() -> bytes:
    """About 4 KB: six Received hops, a DKIM signature, the usual envelope fields, a text body."""
    hops = b"".join(
        b"Received: from mx%d.example.net (mx%d.example.net [192.0.2.%d])\r\n"
        b"\tby mail.example.org (Postfix) with ESMTPS id 4F%05d\r\n"
        b"\tfor <user@example.org>; Tue, 1 Jul 2003 10:52:37 +0200 (CEST)\r\n" % (i, i, i, i)
        for i in range(6)
    )
    header = hops + (
        b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.net; s=sel;\r\n"
        b"\th=from:to:subject:date:message-id; bh=abcdefghijklmnopqrstuvwxyz0123456789=;\r\n"
        b"\tb=" + b"Q" * 300 + b"\r\n"
        b'From: "Alice Example" <alice@example.net>\r\n'
        b"To: Bob <bob@example.org>, carol@example.org\r\n"
        b'Cc: "Dave, Jr." <dave@example.com>\r\n'
        b"Subject: Re: quarterly report =?utf-8?q?caf=C3=A9?=\r\n"
        b"Date: Tue, 1 Jul 2003 10:52:37 +0200\r\n"
        b"Message-ID: <1234.5678@example.net>\r\n"
        b"In-Reply-To: <abcd@example.org>\r\n"
        b"References: <x@example.org> <abcd@example.org>\r\n"
        b"MIME-Version: 1.0\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: 8bit\r\n\r\n"
    )
    line = b"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod.\r\n"
    return header + line * ((4096 - len(header)) // len(line))


def best_of(runs: int, count: int, call: Callable[[], object]) -> float:
    """Seconds for `count` calls, best of `runs`."""
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        for _ in range(count):
            call()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    raw = typical_message()
    header_size = len(MessageView(raw).header_bytes())
    print(f"message: {len(raw)} bytes, header {header_size} bytes")
    for name, call in (
        ("envelope()", lambda: MessageView(raw).envelope()),
        ("bodystructure()", lambda: MessageView(raw).bodystructure()),
        ("envelope()+bodystructure()", lambda: _both(raw)),
        ("body_contains()", lambda: MessageView(raw).body_contains("eiusmod tempor")),
    ):
        seconds = best_of(5, count, call)
        print(f"{count} x {name:28s} {seconds:7.3f} s  {seconds / count * 1e6:7.1f} us each")


def _both(raw: bytes) -> None:
    view = MessageView(raw)
    view.envelope()
    view.bodystructure()


if __name__ == "__main__":
    main()
