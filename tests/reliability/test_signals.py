"""Signals under load (issue 17): HUP storms while sessions work (a reload never drops a
connection nor changes a result), and TERM with 200 sessions open (each gets its goodbye, no
message is lost, the pidfile goes, the master exits within `shutdown_grace`)."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable

from support.clients import LineClient
from support.daemons import child_pids, reloads, wait_for
from support.figures import note
from support.imap import Raw
from support.reliability import PASSWORD, Rig, gone
from support.storm import STORM_SECONDS, Storm

SESSIONS = 200
GRACE = 5.0  # the site's shutdown_grace (support/site.py)


def test_hup_storm_during_load(own_rig: Callable[..., Rig]) -> None:
    rig = own_rig()
    account = rig.account()
    for _ in range(20):
        account.deliver()
    stop = threading.Event()
    sent = [0]

    def hupper() -> None:
        config = rig.site.root / f"imapd-{rig.imapd.port}.conf"
        while not stop.wait(0.05):
            os.utime(config)  # a changed file, read again each time: the same settings
            for daemon in (rig.imapd, rig.pop3d):
                daemon.proc.send_signal(signal.SIGHUP)
            sent[0] += 1

    storm = Storm(account, imap_sessions=4, pop3=True, deliveries=True, seed=5)
    thread = threading.Thread(target=hupper)
    thread.start()
    try:
        figures = storm.run(STORM_SECONDS)
    finally:
        stop.set()
        thread.join()
    assert storm.errors == [], (storm.errors[:10], rig.trouble())
    wait_for(lambda: reloads(rig.imapd) > 0 and reloads(rig.pop3d) > 0, what="reloads taken")
    note(
        "HUP storm",
        f"  {sent[0]} HUPs to each daemon, {figures.get('imap commands', 0)} IMAP commands, "
        f"{figures.get('pop3 sessions', 0)} POP3 sessions, {reloads(rig.imapd)} imapd reloads",
    )
    account.check()
    rig.assert_healthy()


def test_term_with_200_sessions_open(own_rig: Callable[..., Rig]) -> None:
    rig = own_rig("max_per_address = 0\n", accounts=60)
    pidfiles = {}
    for name in ("imapd", "pop3d"):
        daemon = getattr(rig, name)
        port = daemon.port
        daemon.stop()
        pidfiles[name] = rig.site.run / f"{name}-term.pid"
        setattr(rig, name, rig.start(name, port, "--pidfile", str(pidfiles[name])))
    imap_users = [rig.account() for _ in range(10)]
    pop_users = [rig.account() for _ in range(45)]
    for account in [*imap_users, *pop_users]:
        for _ in range(3):
            account.deliver(subdir="cur")
    imap_clients: list[Raw] = []
    for n in range(150):
        client = Raw(rig.imapd.connect(30))
        if n % 2 == 0:  # half logged in with a folder selected, half only greeted
            user = imap_users[n % len(imap_users)].user
            client.send(f'a LOGIN {user} "{PASSWORD}"\r\nb SELECT INBOX\r\n'.encode())
        imap_clients.append(client)
    selected = imap_users[0].select()
    appended = imap_users[0].append(selected)
    pop_clients: list[LineClient] = []
    for account in pop_users:
        client = account.pop()
        client.send(b"DELE 1\r\n")  # pending: never committed, since no QUIT comes
        assert client.line() == b"+OK Message 1 deleted\r\n"
        pop_clients.append(client)
    for _ in range(SESSIONS - len(imap_clients) - len(pop_clients) - 1):
        client = LineClient(rig.pop3d.connect(30))
        assert client.line().startswith(b"+OK")
        pop_clients.append(client)
    for n, client in enumerate(imap_clients):  # every session is up and past its last command
        assert client.raw_line().startswith(b"* OK ")
        if n % 2 == 0:
            client.until_tagged("b")
    kids = {name: child_pids(getattr(rig, name).pid) for name in ("imapd", "pop3d")}
    started = time.monotonic()
    for name in ("imapd", "pop3d"):
        getattr(rig, name).proc.send_signal(signal.SIGTERM)
    for client in [*imap_clients, selected]:
        assert client.raw_line() == b"* BYE [ALERT] Server shutting down, try again later\r\n"
        assert client.closed()
    for client in pop_clients:
        assert client.line() == b"-ERR [SYS/TEMP] Server shutting down, try again later\r\n"
        assert client.closed()
    for name in ("imapd", "pop3d"):
        daemon = getattr(rig, name)
        assert daemon.proc.wait(GRACE + 10) == 0
        assert not pidfiles[name].exists()
        for kid in kids[name]:
            wait_for(lambda k=kid: gone(k), what=f"{name} session process {kid} gone")
    took = time.monotonic() - started
    note("TERM with 200 sessions", f"  every goodbye received and both masters gone: {took:.2f} s")
    for account in pop_users:
        account.check()  # the pending deletions were not committed
    assert appended in imap_users[0].ledger.present()
    for account in imap_users:
        account.check()
    for daemon in rig.daemons():
        log = daemon.log()
        assert "Traceback" not in log and "internal error" not in log, log[-3000:]
        # Every session finished within shutdown_grace: none had to be killed.
        assert "did not finish" not in log, log[-3000:]
