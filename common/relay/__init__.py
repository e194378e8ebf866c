"""IMAP/POP-before-SMTP relay support (seed 002; vpopmail's open_smtp_relay() and clearopensmtp).

After a POP3 or IMAP login the daemons record the client's address in `open-smtp` and rebuild
`tcp.smtp.cdb`, the rules tcpserver gives qmail-smtpd; clearopensmtp, run from cron, drops old
entries. Both take the same lock, so they work beside each other and beside a vpopmail.

  settings.py       the `[relay]` settings (and clearopensmtp's reading of the config file)
  errors.py         RelayError and its kinds, each with clearopensmtp's exit status
  opensmtp.py       the open-smtp file format: entries, comments, malformed lines kept
  lock.py           the fcntl lock on open-smtp.lock that vpopmail's get_write_lock() takes
  files.py          reading a relay file, replacing one atomically with the right mode and owner
  rulesdb.py        building and reading tcp.smtp.cdb (cdb.py and tcprules.py: the formats)
  hook.py           the daemons' after-login hook
  cleanup.py        expiring and checking, under the lock
  clearopensmtp.py  the clearopensmtp program

The daemons use what this module exports; the rest is for clearopensmtp and the tests.
"""

from __future__ import annotations

from common.relay.errors import RelayConfigError
from common.relay.hook import daemon_settings, open_relay
from common.relay.settings import RelaySettings

__all__ = ["RelayConfigError", "RelaySettings", "daemon_settings", "open_relay"]
