"""The sessions every stats test tells the collector about, in one place."""

from __future__ import annotations

from common.stats import StatsClient


def sample_sessions(client: StatsClient) -> None:
    """Three connections (two POP3, one IMAP over IPv6), bob's second login failing, one
    transfer, and both POP3 children ended: 2 POP3 and 1 IMAP connection, 2 good logins and
    1 bad, the IMAP session still open."""
    client.connection_opened("pop3", 1001, "192.0.2.1")
    client.connection_opened("pop3", 1002, "192.0.2.2")
    client.connection_opened("imap", 2001, "2001:db8::1")
    client.login("pop3", 1001, "bob", "192.0.2.1", True)
    client.login("pop3", 1002, "bob", "192.0.2.2", False)
    client.login("imap", 2001, "carol", "2001:db8::1", True)
    client.transfer("pop3", 1001, 100, 2000)
    client.child_ended("pop3", 1001)
    client.child_ended("pop3", 1002)
