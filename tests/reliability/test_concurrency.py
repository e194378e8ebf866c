"""Concurrency on one account and on the users file (issue 17): several IMAP sessions and a POP3
session while an MTA delivers into new/ and other sessions move, flag and expunge; msmpd ADD and
DELE storms while users log in. The final state of the store equals the one the test computed
from what every client was told, and no session sees an error it did not cause."""

from __future__ import annotations

import random
import threading
import time

from support.mailstore import check_users_file
from support.reliability import Account, Rig
from support.storm import STORM_SECONDS, Storm


def test_sessions_move_flag_expunge_while_mail_arrives(account: Account, rig: Rig) -> None:
    for _ in range(20):
        account.deliver()
    storm = Storm(account, imap_sessions=4, pop3=True, deliveries=True, movers=True, seed=3)
    figures = storm.run(STORM_SECONDS)
    assert storm.errors == [], (storm.errors[:10], rig.trouble())
    assert figures.get("imap moves", 0) > 0 and figures.get("deliveries", 0) > 0
    account.check()
    rig.assert_healthy()


def test_msmpd_add_and_dele_storm_while_users_log_in(own_rig) -> None:  # type: ignore[no-untyped-def]
    """Admins add and delete users as fast as they can while the users of the rig log in over
    POP3 and IMAP: a user who exists throughout always logs in (the users file is replaced
    whole, never seen half-written), and the file ends holding exactly the users whose last
    acknowledged change was an ADD."""
    rig = own_rig(msmpd=True, stats=True)
    steady = [rig.account() for _ in range(3)]
    for account in steady:
        account.deliver()
    deadline = time.monotonic() + STORM_SECONDS
    errors: list[str] = []
    last: dict[str, bool] = {}  # user -> its last acknowledged change was an ADD
    lock = threading.Lock()

    def admin(number: int) -> None:
        rng = random.Random(number)
        client = rig.msmp()
        while time.monotonic() < deadline:
            user = f"churn{rng.randrange(6)}"
            adding = rng.random() < 0.6
            client.send((f"ADD {user} pw-{user}" if adding else f"DELE {user}").encode() + b"\r\n")
            reply = client.line()
            with lock:
                if reply.startswith(b"+OK"):
                    last[user] = adding
                elif not (b"User does not exist" in reply or b"logged in" in reply):
                    errors.append(f"msmpd: {reply!r}")
        client.send(b"QUIT\r\n")
        client.line()

    def user(account: Account) -> None:
        while time.monotonic() < deadline:
            try:
                client = account.imap()
                client.ok("SELECT INBOX")
                client.ok("LOGOUT")
                pop = account.pop()
                pop.send(b"QUIT\r\n")  # the maildrop's lock is let go before the reply
                assert pop.line().startswith(b"+OK")
                pop.close()
            except (AssertionError, OSError, EOFError) as exc:
                with lock:
                    errors.append(f"{account.user}: {exc}")

    threads = [threading.Thread(target=admin, args=(n,)) for n in range(2)]
    threads += [threading.Thread(target=user, args=(a,)) for a in steady]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(STORM_SECONDS + 60)
    assert errors == [], errors[:10]
    names = set(check_users_file(rig.site.root / "users"))
    churned = {u for u in names if u.startswith("churn")}
    assert churned == {u for u, present in last.items() if present}
    assert {a.user for a in steady} <= names
    for account in steady:
        account.check()
    rig.assert_healthy()
