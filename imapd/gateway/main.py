"""imapgw: the 4711 purpose-string gateway of seed 000, faithful on the wire and safe inside.

Usage:
  imapgw [options]
  imapgw -h | --help
  imapgw -v | --version

Options:
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
{common_options}

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

import sys

from docopt import docopt

from common import service
from common.cli import usage
from common.version import VERSION
from imapd.gateway import replies
from imapd.gateway.session import make_handler

__doc__ = usage(__doc__, "imapgw")


def busy_reply(reason: str) -> bytes:
    return replies.no(replies.BUSY)


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
