"""Helpers shared by the test folders: plain modules, no tests and no fixtures of their own.

Found through `pythonpath` in setup.cfg's [tool:pytest]; the conftest.py files turn them into
fixtures. Test modules import from here, never from conftest.py or from another test module.

- `paths`: the repository and the message corpus.
- `daemons`: starting the console scripts as processes, polling waits, /proc checks.
- `site`: a temporary mail base and config (`MailSite`), delivering into a Maildir.
- `clients`: `LineClient`, a raw-socket line client.
- `pop3`: the POP3 users and `Pop3Server` behind the `pop3d` fixture.
- `imap`: raw IMAP transcripts, `ImapServer`, `start_imapd`, the module-wide `shared_imapd`.
- `sync`: what the real IMAP clients' tests (mbsync, offlineimap) compare and seed.
- `tls`: a test CA and server certificate made with `openssl`, TLS client helpers, s_client.
- `mailstore`: the ledger of what clients were told, and the byte-for-byte check of a store's
  end state (tests/reliability, bench/soak.py).
- `reliability`: imapd, pop3d (msmpd, mailstatd) on one site with one users file, accounts.
- `storm`: a bounded storm of sessions on one mailbox, every reply and body judged.
"""
