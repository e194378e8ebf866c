"""IMAP/POP-before-SMTP relay support (seed 002): the cdb format, tcprules's rule language,
open_relay() as the daemons call it, clearopensmtp and its cron wrapper.

Checked against the real tools from Debian (tests/apt-packages): ucspi-tcp's `tcprules` and
`tcprulescheck`, and tinycdb's `cdb`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import multiprocessing
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from common import config
from common.config import Settings
from common.relay import cdb, clearopensmtp, opensmtp, tcprules
from common.relay import settings as relay_settings
from common.relay.errors import Exit, RelayConfigError
from common.relay.hook import open_relay
from common.relay.settings import RelaySettings
from common.version import VERSION
from support.paths import REPO

CLEAROPENSMTP = Path(sys.executable).with_name("clearopensmtp")
CRON_WRAPPER = REPO / "scripts" / "clearopensmtp-cron"
RULE = 'allow,RELAYCLIENT=""'
LOG = logging.getLogger("maildaemons.test.relay")

# A rules file using every address form and quoting tcprules knows.
STATIC_RULES = b"""# static rules
127.0.0.1:allow,RELAYCLIENT=""
10.:deny
192.168.1.10-20:allow,RELAYCLIENT="",RBLSMTPD=""
1-3.0.0.1:deny,WHY="range in the first part"
198.51.100.-2:allow
=mail.example.com:allow,X=/a"b/
info@1.2.3.4:allow
1.2.3.4:allow,A="1",B="2"
this line has no colon and is skipped
\t
:allow,RBLSMTPD="-no thanks"  \t
"""


# ------------------------------------------------------------------------------------ helpers


@dataclass
class Site:
    """A state directory and a config file pointing at it, with relaying enabled."""

    state: Path
    conf: Path
    settings: RelaySettings


def make_site(tmp_path: Path, extra: str = "", enabled: str = "yes") -> Site:
    state = tmp_path / "state"
    state.mkdir(parents=True, exist_ok=True)
    conf = tmp_path / "maildaemons.conf"
    conf.write_text(f"[common]\nstate_dir = {state}\n\n[relay]\nenabled = {enabled}\n{extra}")
    return Site(state, conf, relay_settings.load_settings(str(conf), None))


def state_dir_only(state: Path) -> Settings:
    """Settings with nothing but the state directory: every [relay] key at its default."""
    return Settings("relay", overrides={"state_dir": str(state)})


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return make_site(tmp_path)


def tcprulescheck(cdb_path: Path, ip: str) -> list[str]:
    """What tcpserver would do for a client at `ip`, in tcprulescheck's words."""
    env = {"PATH": os.environ["PATH"], "TCPREMOTEIP": ip}
    proc = subprocess.run(
        ["tcprulescheck", str(cdb_path)], env=env, capture_output=True, text=True, timeout=10
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()


def relays(cdb_path: Path, ip: str) -> bool:
    out = tcprulescheck(cdb_path, ip)
    return out[-1] == "allow connection" and "set environment variable RELAYCLIENT=" in out


def entries_of(site: Site) -> list[opensmtp.Entry]:
    lines = opensmtp.read_open_smtp(site.settings.open_smtp)
    assert not opensmtp.malformed(lines)
    return opensmtp.entries(lines)


def write_open_smtp(site: Site, lines: list[str]) -> None:
    site.settings.open_smtp.write_text("".join(line + "\n" for line in lines))


def clear(site: Site, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the installed console script, as cron would."""
    return subprocess.run(
        [str(CLEAROPENSMTP), "-c", str(site.conf), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def run_main(site: Site, *args: str) -> int:
    return clearopensmtp.main(["-c", str(site.conf), *args])


HOLDER = """
import fcntl, sys
f = open(sys.argv[1], "a")
fcntl.lockf(f, fcntl.LOCK_EX)  # the lock vpopmail's get_write_lock() takes
print("locked", flush=True)
sys.stdin.read()
"""


@contextlib.contextmanager
def lock_held(path: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process holding the relay lock until the block ends (or stdin is closed)."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "locked"
        yield holder
    finally:
        assert holder.stdin is not None
        with contextlib.suppress(OSError):
            holder.stdin.close()  # the holder's read ends, it exits and the lock goes with it
        holder.wait(10)
        if holder.stdout is not None:
            holder.stdout.close()


def tcprules_build(tmp_path: Path, text: bytes) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["tcprules", str(tmp_path / "real.cdb"), str(tmp_path / "real.tmp")],
        input=text,
        capture_output=True,
        timeout=10,
    )


def test_tools_are_installed() -> None:
    # The suite needs Debian's ucspi-tcp and tinycdb (tests/apt-packages); say so plainly.
    for tool in ("tcprules", "tcprulescheck", "cdb"):
        assert subprocess.run(["which", tool], capture_output=True).returncode == 0, tool
    assert CLEAROPENSMTP.exists()


# ------------------------------------------------------------------------------------------- cdb


def write_cdb_file(path: Path, records: list[tuple[bytes, bytes]]) -> None:
    with path.open("wb") as fp:
        cdb.write_cdb(fp, records)


def test_cdb_bytes_equal_tcprules_output(tmp_path: Path) -> None:
    text = STATIC_RULES + b"".join(
        f'172.16.{i // 256}.{i % 256}:allow,RELAYCLIENT=""\n'.encode() for i in range(600)
    )
    assert tcprules_build(tmp_path, text).returncode == 0
    write_cdb_file(tmp_path / "ours.cdb", tcprules.compile_rules(text))
    assert (tmp_path / "ours.cdb").read_bytes() == (tmp_path / "real.cdb").read_bytes()


def test_cdb_readable_by_tinycdb(tmp_path: Path) -> None:
    records = [(b"a", b"1"), (b"", b"empty key"), (b"bin\0key", bytes(range(256))), (b"a", b"2")]
    records += [(f"k{i}".encode(), f"v{i}".encode()) for i in range(1000)]
    path = tmp_path / "ours.cdb"
    write_cdb_file(path, records)
    dump = subprocess.run(["cdb", "-d", str(path)], capture_output=True, timeout=10, check=True)
    expected = b"".join(b"+%d,%d:%s->%s\n" % (len(k), len(v), k, v) for k, v in records) + b"\n"
    assert dump.stdout == expected
    # `cdb -q` prints every record for the key, `-n N` only the Nth
    for args, value in [([b"a"], b"12"), ([b"-n", b"2", b"a"], b"2"), ([b"k999"], b"v999")]:
        got = subprocess.run(["cdb", "-q", str(path), *args], capture_output=True, timeout=10)
        assert (got.returncode, got.stdout) == (0, value)
    missing = subprocess.run(["cdb", "-q", str(path), "nope"], capture_output=True, timeout=10)
    assert missing.returncode == 100
    # tinycdb writes the same bytes from our dump
    subprocess.run(["cdb", "-c", str(tmp_path / "tiny.cdb")], input=dump.stdout, check=True)
    assert (tmp_path / "tiny.cdb").read_bytes() == path.read_bytes()


def test_cdb_reader(tmp_path: Path) -> None:
    path = tmp_path / "x.cdb"
    subprocess.run(
        ["cdb", "-c", str(path)], input=b"+1,1:a->1\n+1,1:a->2\n+2,0:bc->\n\n", check=True
    )
    reader = cdb.CdbReader.from_file(path)
    assert reader.get(b"a") == b"1"
    assert list(reader.get_all(b"a")) == [b"1", b"2"]
    assert reader.get(b"bc") == b""
    assert reader.get(b"zz") is None
    assert list(reader.items()) == [(b"a", b"1"), (b"a", b"2"), (b"bc", b"")]
    assert cdb.CdbReader(bytes(cdb.HEADER_SIZE)).get(b"a") is None
    with pytest.raises(cdb.CdbError):
        cdb.CdbReader(b"short")
    with pytest.raises(cdb.CdbError):
        cdb.CdbReader(path.read_bytes()[:-8]).get(b"bc")


# ------------------------------------------------------------------------------------- tcprules


@pytest.mark.parametrize(
    ("text", "deny", "env"),
    [
        (b"allow", False, ()),
        (b"deny", True, ()),
        (b'allow,RELAYCLIENT=""', False, ((b"RELAYCLIENT", b""),)),
        (b'allow,A="1",B="2"', False, ((b"A", b"1"), (b"B", b"2"))),
        (b'allow,X=/a"b/', False, ((b"X", b'a"b'),)),
        (b'deny,WHY="no"', True, ((b"WHY", b"no"),)),
        (b'allow,=""', False, ((b"", b""),)),
    ],
)
def test_parse_instructions(text: bytes, deny: bool, env: tuple[tuple[bytes, bytes], ...]) -> None:
    instructions = tcprules.parse_instructions(text)
    assert instructions == tcprules.Instructions(deny, env)
    assert tcprules.Instructions.decode(instructions.encode()) == instructions


@pytest.mark.parametrize(
    "line",
    [
        b"1.2.3.4:allow,FOO",
        b"1.2.3.4:allowX",
        b"1.2.3.4:allow\r",
        b"1.2.3.4:Allow",
        b"a:b:allow",
        b"1.2.3.4:allow,A=",
        b'1.2.3.4:allow,A="x',
        b"1.2.3.4:allow,A=B=C",
        b'1.2.3.4:allow,A="x"junk',
        b'1.2.3.4:allow,A="x",',
        b"1.2.3.x-3:allow",
    ],
)
def test_bad_rule_lines_fail_like_tcprules(tmp_path: Path, line: bytes) -> None:
    text = b"9.9.9.9:allow\n" + line + b"\n"
    assert tcprules_build(tmp_path, text).returncode == 100
    with pytest.raises(tcprules.RuleSyntaxError) as caught:
        tcprules.compile_rules(text)
    assert caught.value.lineno == 2


@pytest.mark.parametrize(
    ("address", "keys"),
    [
        (b"1.2.3.4", [b"1.2.3.4"]),
        (b"1.2.3.4-6", [b"1.2.3.4", b"1.2.3.5", b"1.2.3.6"]),
        (b"1.2.3.254-300", [b"1.2.3.254", b"1.2.3.255"]),
        (b"1.2.3.-1", [b"1.2.3.0", b"1.2.3.1"]),
        (b"1-2.0.0.1", [b"1.0.0.1", b"2.0.0.1"]),
        (b"1.2.3.7-5", []),
        (b"=a-b.example", [b"=a-b.example"]),
        (b"u-1@1.2.3.4", [b"u-1@1.2.3.4"]),
    ],
)
def test_expand_address(address: bytes, keys: list[bytes]) -> None:
    assert tcprules.expand_address(address) == keys


def test_lookup_agrees_with_tcprulescheck(tmp_path: Path) -> None:
    assert tcprules_build(tmp_path, STATIC_RULES).returncode == 0
    reader = cdb.CdbReader.from_file(tmp_path / "real.cdb")
    ips = ["127.0.0.1", "127.0.0.2", "10.1.2.3", "192.168.1.15", "192.168.1.21", "2.0.0.1"]
    ips += ["198.51.100.2", "198.51.100.3", "1.2.3.4", "8.8.8.8"]
    for ip in ips:
        found = tcprules.lookup(reader, ip)
        assert found is not None
        key, instructions = found
        expected = [f"rule {key.decode()}:"]
        if instructions.deny:  # tcprulescheck stops at the D that comes first
            expected.append("deny connection")
        else:
            expected += [
                f"set environment variable {n.decode()}={v.decode()}" for n, v in instructions.env
            ]
            expected.append("allow connection")
        assert tcprulescheck(tmp_path / "real.cdb", ip) == expected, ip


# ------------------------------------------------------------------------------------- settings


def test_settings_defaults(tmp_path: Path) -> None:
    settings = RelaySettings.from_settings(state_dir_only(tmp_path))
    assert settings == RelaySettings(
        enabled=False,
        open_smtp=tmp_path / "open-smtp",
        lock_file=tmp_path / "open-smtp.lock",
        tcp_rules=tmp_path / "tcp.smtp",
        tcp_cdb=tmp_path / "tcp.smtp.cdb",
        rule=RULE,
        clear_minutes=180,
        tcprules=None,
        lock_timeout=5.0,
    )


def test_settings_from_config(tmp_path: Path) -> None:
    site = make_site(
        tmp_path,
        "open_smtp = relay/open-smtp\ntcp_cdb = /etc/tcp.smtp.cdb\n"
        'rule = allow,RELAYCLIENT="",RBLSMTPD=""\n'
        "clear_minutes = 30\ntcprules = /usr/bin/tcprules\nlock_timeout = 1.5\n",
    )
    s = site.settings
    assert s.enabled
    assert s.open_smtp == site.state / "relay/open-smtp"
    assert s.lock_file == site.state / "relay/open-smtp.lock"
    assert s.tcp_cdb == Path("/etc/tcp.smtp.cdb")
    assert (s.rule, s.clear_minutes, s.tcprules, s.lock_timeout) == (
        'allow,RELAYCLIENT="",RBLSMTPD=""',
        30,
        "/usr/bin/tcprules",
        1.5,
    )


@pytest.mark.parametrize(
    "extra",
    [
        "rule = permit\n",
        "rule = allow,X=\n",
        "clear_minutes = soon\n",
        "clear_minutes = -1\n",
        "enabled = maybe\n",
    ],
)
def test_bad_settings(tmp_path: Path, extra: str) -> None:
    with pytest.raises(RelayConfigError):
        make_site(tmp_path, extra)


# ------------------------------------------------------------------------------------ open_relay


def test_logins_from_several_addresses_reach_open_smtp_and_cdb(site: Site) -> None:
    site.settings.tcp_rules.write_bytes(b"10.:deny\n127.:allow\n")
    clients = {"127.0.0.2": "127.0.0.2", "127.0.0.3": "127.0.0.3", "::ffff:192.0.2.7": "192.0.2.7"}
    for n, client in enumerate(clients):
        assert open_relay(site.settings, client, LOG, now=1_000_000 + n)
    lines = site.settings.open_smtp.read_text().splitlines()
    assert lines == [f"{ip}:{RULE}\t{1_000_000 + n}" for n, ip in enumerate(clients.values())]
    for ip in clients.values():
        assert relays(site.settings.tcp_cdb, ip)
        assert tcprulescheck(site.settings.tcp_cdb, ip)[0] == f"rule {ip}:"
    # the static rules are in the cdb as well
    assert tcprulescheck(site.settings.tcp_cdb, "127.0.0.9") == ["rule 127.:", "allow connection"]
    assert tcprulescheck(site.settings.tcp_cdb, "10.0.0.1") == ["rule 10.:", "deny connection"]
    assert not relays(site.settings.tcp_cdb, "192.0.2.8")
    assert run_main(site, "--check") == Exit.OK


def test_relogin_refreshes_the_one_line(site: Site) -> None:
    assert open_relay(site.settings, "127.0.0.2", LOG, now=100)
    assert open_relay(site.settings, "127.0.0.3", LOG, now=200)
    assert open_relay(site.settings, "127.0.0.2", LOG, now=300)
    assert [(e.ip, e.stamp) for e in entries_of(site)] == [("127.0.0.3", 200), ("127.0.0.2", 300)]
    assert relays(site.settings.tcp_cdb, "127.0.0.2")


def test_relogin_repairs_a_cdb_that_lacks_the_address(site: Site) -> None:
    assert open_relay(site.settings, "127.0.0.2", LOG, now=100)
    site.settings.tcp_cdb.unlink()
    assert open_relay(site.settings, "127.0.0.2", LOG, now=200)
    assert relays(site.settings.tcp_cdb, "127.0.0.2")


@pytest.mark.parametrize("client", ["2001:db8::1", "::1", "not an address", ""])
def test_ipv6_and_junk_clients_are_logged_and_skipped(
    site: Site, client: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    assert not open_relay(site.settings, client, LOG)
    assert "is not an IPv4 client, not recorded" in caplog.text
    assert not site.settings.open_smtp.exists()


def test_disabled_records_nothing(tmp_path: Path) -> None:
    site = make_site(tmp_path, enabled="no")
    assert not open_relay(site.settings, "127.0.0.2", LOG)
    assert not site.settings.open_smtp.exists()
    assert not site.settings.lock_file.exists()


def test_failure_is_logged_never_raised(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    site = make_site(tmp_path)
    gone = RelaySettings.from_settings(state_dir_only(tmp_path / "no such dir"))
    settings = dataclasses.replace(gone, enabled=True)
    assert not open_relay(settings, "127.0.0.2", LOG)
    assert "relay: not opened for 127.0.0.2: cannot open lock file" in caplog.text
    # A broken tcp.smtp keeps the old cdb (as tcprules would) and names the line.
    assert open_relay(site.settings, "127.0.0.2", LOG)
    before = site.settings.tcp_cdb.read_bytes()
    site.settings.tcp_rules.write_bytes(b"# fine\n1.2.3.4:allow,BROKEN\n")
    assert not open_relay(site.settings, "127.0.0.3", LOG)
    assert "line 2: variable without '='" in caplog.text
    assert site.settings.tcp_cdb.read_bytes() == before


def test_busy_lock_bounds_the_wait(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    site = make_site(tmp_path, "lock_timeout = 0.3\n")
    write_open_smtp(site, [f"127.0.0.5:{RULE}\t100"])
    with lock_held(site.settings.lock_file):
        started = time.monotonic()
        assert not open_relay(site.settings, "127.0.0.2", LOG)
        assert 0.3 <= time.monotonic() - started < 5
    assert "still locked by another process" in caplog.text
    assert [e.ip for e in entries_of(site)] == ["127.0.0.5"]
    assert open_relay(site.settings, "127.0.0.2", LOG)  # free again


def test_malformed_lines_survive_a_recording(site: Site, caplog: pytest.LogCaptureFixture) -> None:
    write_open_smtp(site, ["# a comment", "garbage here", f"127.0.0.5:{RULE}\t100"])
    assert open_relay(site.settings, "127.0.0.2", LOG, now=200)
    assert site.settings.open_smtp.read_text().splitlines() == [
        "# a comment",
        "garbage here",
        f"127.0.0.5:{RULE}\t100",
        f"127.0.0.2:{RULE}\t200",
    ]
    assert f"{site.settings.open_smtp}:2: malformed line kept" in caplog.text
    assert relays(site.settings.tcp_cdb, "127.0.0.5")


def test_files_readable_by_tcpserver_despite_umask(site: Site) -> None:
    old = os.umask(0o077)
    try:
        assert open_relay(site.settings, "127.0.0.2", LOG)
    finally:
        os.umask(old)
    for path in (site.settings.open_smtp, site.settings.tcp_cdb):
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert not [p for p in site.state.iterdir() if ".tmp." in p.name]


def test_external_tcprules_builds_the_same_cdb(tmp_path: Path) -> None:
    ours = make_site(tmp_path / "ours")
    theirs = make_site(tmp_path / "theirs", "tcprules = tcprules\n")
    for s in (ours, theirs):
        s.settings.tcp_rules.write_bytes(STATIC_RULES)
        old = os.umask(0o077)
        try:
            for n, ip in enumerate(["127.0.0.2", "127.0.0.3"]):
                assert open_relay(s.settings, ip, LOG, now=100 + n)
        finally:
            os.umask(old)
    assert theirs.settings.tcp_cdb.read_bytes() == ours.settings.tcp_cdb.read_bytes()
    assert stat.S_IMODE(theirs.settings.tcp_cdb.stat().st_mode) == 0o644
    assert not [p for p in theirs.state.iterdir() if ".tmp." in p.name]


NOBODY = 65534


def _record_as_nobody(settings: RelaySettings, ip: str) -> None:
    os.setgid(NOBODY)
    os.setuid(NOBODY)
    sys.exit(0 if open_relay(settings, ip, LOG) else 1)


def record_as_nobody(settings: RelaySettings, ip: str) -> int | None:
    """A daemon child after its privilege drop records a login."""
    child = multiprocessing.get_context("fork").Process(
        target=_record_as_nobody, args=(settings, ip)
    )
    child.start()
    child.join(30)
    return child.exitcode


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to play cron and a daemon's user")
def test_root_cron_keeps_files_usable_by_the_daemons_user() -> None:
    # Not under tmp_path: pytest's base directory is private to root.
    top = Path(tempfile.mkdtemp(prefix="relay-owner-"))
    try:
        top.chmod(0o755)
        site = make_site(top)
        os.chown(site.state, NOBODY, NOBODY)
        assert record_as_nobody(site.settings, "127.0.0.2") == 0
        site.settings.lock_file.unlink()  # cron will create it anew, as root
        assert clear(site, "--minutes", "0").returncode == 0
        for path in (site.settings.lock_file, site.settings.open_smtp, site.settings.tcp_cdb):
            assert (path.stat().st_uid, path.stat().st_gid) == (NOBODY, NOBODY), path
        assert record_as_nobody(site.settings, "127.0.0.3") == 0
        assert [e.ip for e in entries_of(site)] == ["127.0.0.3"]
    finally:
        shutil.rmtree(top)


# ---------------------------------------------------------------------------------- clearopensmtp


def test_expired_entries_go_fresh_ones_stay(site: Site) -> None:
    now = int(time.time())
    old, fresh, future = now - 181 * 60, now - 10 * 60, now + 3600
    for ip, stamp in [("127.0.0.2", old), ("127.0.0.3", fresh), ("127.0.0.4", future)]:
        assert open_relay(site.settings, ip, LOG, now=stamp)
    proc = clear(site)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")
    assert [e.ip for e in entries_of(site)] == ["127.0.0.3", "127.0.0.4"]
    assert not relays(site.settings.tcp_cdb, "127.0.0.2")
    assert relays(site.settings.tcp_cdb, "127.0.0.3")
    assert clear(site, "--check").returncode == 0


def test_minutes_option_and_config(tmp_path: Path) -> None:
    site = make_site(tmp_path, "clear_minutes = 30\n")
    now = int(time.time())
    write_open_smtp(site, [f"127.0.0.2:{RULE}\t{now - 40 * 60}", f"127.0.0.3:{RULE}\t{now}"])
    assert run_main(site) == Exit.OK
    assert [e.ip for e in entries_of(site)] == ["127.0.0.3"]
    assert run_main(site, "--minutes", "0") == Exit.OK  # even an entry from this very second
    assert entries_of(site) == []
    assert cdb.CdbReader.from_file(site.settings.tcp_cdb).get(b"127.0.0.3") is None


def test_dry_run_changes_nothing(site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    now = int(time.time())
    assert open_relay(site.settings, "127.0.0.2", LOG, now=now - 200 * 60)
    assert open_relay(site.settings, "127.0.0.3", LOG, now=now)
    before = (site.settings.open_smtp.read_bytes(), site.settings.tcp_cdb.stat().st_mtime_ns)
    assert run_main(site, "--dry-run") == Exit.OK
    assert capsys.readouterr().out == "would drop 127.0.0.2 (line 1, 200 minutes old)\n"
    assert (
        site.settings.open_smtp.read_bytes(),
        site.settings.tcp_cdb.stat().st_mtime_ns,
    ) == before


def test_check_names_missing_addresses(site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    now = int(time.time())
    site.settings.tcp_rules.write_bytes(b"127.0.0.4:deny\n")
    assert open_relay(site.settings, "127.0.0.2", LOG, now=now)
    assert run_main(site, "--check") == Exit.OK
    # Entries written behind the cdb's back (the seed's symptom), one shadowed by a static deny.
    with site.settings.open_smtp.open("a") as fp:
        fp.write(f"127.0.0.3:{RULE}\t{now}\n127.0.0.4:{RULE}\t{now}\n")
    capsys.readouterr()
    assert run_main(site, "--check") == Exit.CHECK_FAILED
    err = capsys.readouterr().err
    assert f"127.0.0.3 is missing from {site.settings.tcp_cdb}" in err
    assert "127.0.0.4 is missing" in err
    assert "127.0.0.2" not in err
    assert run_main(site) == Exit.OK  # clearing rebuilds the cdb: 127.0.0.3 relays again
    capsys.readouterr()
    assert run_main(site, "--check") == Exit.CHECK_FAILED
    assert "127.0.0.3" not in capsys.readouterr().err
    site.settings.tcp_cdb.unlink()
    assert run_main(site, "--check") == Exit.CHECK_FAILED


def test_lock_held_elsewhere_fails_cleanly(site: Site) -> None:
    now = int(time.time())
    write_open_smtp(site, [f"127.0.0.2:{RULE}\t{now - 500 * 60}"])
    before = site.settings.open_smtp.read_bytes()
    with lock_held(site.settings.lock_file):
        started = time.monotonic()
        proc = clear(site, "--wait", "0.5")
        assert 0.5 <= time.monotonic() - started < 30
        assert proc.returncode == Exit.LOCK_BUSY
        assert proc.stderr.count("\n") == 1 and "still locked by another process" in proc.stderr
        assert clear(site, "--wait", "0", "--check").returncode == Exit.LOCK_BUSY
    assert site.settings.open_smtp.read_bytes() == before
    assert not site.settings.tcp_cdb.exists()


def test_lock_held_elsewhere_is_waited_for(site: Site) -> None:
    now = int(time.time())
    write_open_smtp(site, [f"127.0.0.2:{RULE}\t{now - 500 * 60}", f"127.0.0.3:{RULE}\t{now}"])
    with lock_held(site.settings.lock_file):
        waiting = subprocess.Popen(
            [str(CLEAROPENSMTP), "-c", str(site.conf), "--wait", "30"], stderr=subprocess.PIPE
        )
        time.sleep(0.5)  # long enough to start and block on the lock
        assert waiting.poll() is None
        assert [e.ip for e in entries_of(site)] == ["127.0.0.2", "127.0.0.3"]
    _, err = waiting.communicate(timeout=30)
    assert (waiting.returncode, err) == (Exit.OK, b"")
    assert [e.ip for e in entries_of(site)] == ["127.0.0.3"]


def test_malformed_lines_are_kept_and_reported(site: Site) -> None:
    now = int(time.time())
    lines = [
        f"127.0.0.2:{RULE}\t{now - 500 * 60}",
        "no tab here",
        f"127.0.0.3:{RULE} {now}",
        f"::1:{RULE}\t{now}",
        f"127.0.0.4:permit\t{now}",
        f"127.0.0.5:{RULE}\tyesterday",
        f"127.0.0.6:{RULE}\t{now}",
    ]
    write_open_smtp(site, lines)
    proc = clear(site)
    assert proc.returncode == Exit.MALFORMED
    path = site.settings.open_smtp
    for lineno in (2, 3, 4, 5, 6):
        assert f"{path}:{lineno}: malformed line kept" in proc.stderr
    assert f"{path}:1:" not in proc.stderr and f"{path}:7:" not in proc.stderr
    assert path.read_text().splitlines() == lines[1:]
    assert relays(site.settings.tcp_cdb, "127.0.0.6")
    assert not relays(site.settings.tcp_cdb, "127.0.0.2")
    assert clear(site, "--check").returncode == Exit.MALFORMED


def test_unreadable_open_smtp(site: Site) -> None:
    site.settings.open_smtp.mkdir()
    proc = clear(site)
    assert proc.returncode == Exit.UNREADABLE
    assert proc.stderr.startswith("clearopensmtp: cannot read ")


def test_broken_tcp_smtp_fails_the_rebuild(site: Site) -> None:
    write_open_smtp(site, [f"127.0.0.2:{RULE}\t{int(time.time())}"])
    site.settings.tcp_rules.write_bytes(b"1.2.3.4:allow,X\n")
    proc = clear(site)
    assert proc.returncode == Exit.RULES
    assert "line 1: variable without '='" in proc.stderr
    assert not site.settings.tcp_cdb.exists()


def test_nothing_to_do_creates_nothing(site: Site) -> None:
    assert clear(site).returncode == Exit.OK
    assert clear(site, "--check").returncode == Exit.OK
    assert list(site.state.iterdir()) == []


def test_cli_arguments_and_config(
    site: Site, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run_main(site, "--minutes", "soon") == Exit.USAGE
    assert run_main(site, "--wait", "-1") == Exit.USAGE
    assert clearopensmtp.main(["--bogus"]) == Exit.USAGE
    capsys.readouterr()
    assert clearopensmtp.main(["-c", str(tmp_path / "missing.conf")]) == Exit.CONFIG
    err = capsys.readouterr().err
    assert err == f"clearopensmtp: config file {tmp_path / 'missing.conf'} not found\n"
    bad = tmp_path / "bad.conf"
    bad.write_text("[relay\nenabled = yes\n")
    assert clearopensmtp.main(["-c", str(bad)]) == Exit.CONFIG
    assert capsys.readouterr().err.count("\n") == 1
    # a missing default config is fine: --state-dir alone will do
    monkeypatch.setattr(config, "DEFAULT_CONFIG", tmp_path / "absent.conf")
    assert clearopensmtp.main(["--state-dir", str(site.state)]) == Exit.OK


def test_help_and_version() -> None:
    version = subprocess.run([str(CLEAROPENSMTP), "--version"], capture_output=True, text=True)
    assert (version.returncode, version.stdout) == (0, f"clearopensmtp {VERSION}\n")
    short = subprocess.run([str(CLEAROPENSMTP), "-v"], capture_output=True, text=True)
    assert short.stdout == version.stdout
    helped = subprocess.run([str(CLEAROPENSMTP), "-h"], capture_output=True, text=True)
    assert helped.returncode == 0
    assert "clearopensmtp [-c FILE] [--state-dir DIR] [--minutes N]" in helped.stdout


# --------------------------------------------------------------------------- concurrency, cron


ROUNDS = 10


def _record_in_child(settings: RelaySettings, ip: str, go: threading.Event) -> None:
    go.wait(60)
    # several logins each (a refresh must never leave a second line for the address)
    sys.exit(0 if all(open_relay(settings, ip, LOG) for _ in range(ROUNDS)) else 1)


def _clear_until(
    site: Site, done: threading.Event, results: list[tuple[int, str]], overlapped: list[bool]
) -> None:
    while not done.is_set() or len(results) < 3:
        # Started while the recorders were at work: on a loaded machine a clear (a new Python
        # process) may outlast all fifty of them, so its end says nothing.
        overlapped.append(not done.is_set())
        proc = clear(site, "--wait", "60")
        results.append((proc.returncode, proc.stderr))


def _read_cdb_until(site: Site, done: threading.Event, results: list[int]) -> None:
    # What tcpserver does on each connection: a half-written cdb would make tcprulescheck fail.
    while not done.is_set():
        if site.settings.tcp_cdb.exists():
            env = {"PATH": os.environ["PATH"], "TCPREMOTEIP": "192.0.2.1"}
            check = subprocess.run(
                ["tcprulescheck", str(site.settings.tcp_cdb)], env=env, capture_output=True
            )
            results.append(check.returncode)


def test_parallel_recordings_while_clearing(tmp_path: Path) -> None:
    site = make_site(tmp_path, "lock_timeout = 60\n")
    site.settings.tcp_rules.write_bytes(b"10.:deny\n")
    stale = int(time.time()) - 500 * 60
    write_open_smtp(site, [f"198.51.100.{i}:{RULE}\t{stale}" for i in range(1, 11)])
    ctx = multiprocessing.get_context("fork")
    go = ctx.Event()
    ips = [f"192.0.2.{i}" for i in range(1, 51)]
    # Fork every recorder before the clearing thread exists: forking a threaded process is unsafe.
    workers = [ctx.Process(target=_record_in_child, args=(site.settings, ip, go)) for ip in ips]
    for worker in workers:
        worker.start()
    done, results, reads, overlapped = threading.Event(), [], [], []
    clearer = threading.Thread(target=_clear_until, args=(site, done, results, overlapped))
    reader = threading.Thread(target=_read_cdb_until, args=(site, done, reads))
    clearer.start()
    reader.start()
    go.set()
    for worker in workers:
        worker.join(90)
    done.set()
    clearer.join(90)
    reader.join(90)
    assert [w.exitcode for w in workers] == [0] * 50
    assert results and all(result == (0, "") for result in results), results
    assert reads and set(reads) == {0}
    assert any(overlapped)
    recorded = [e.ip for e in entries_of(site)]
    assert sorted(recorded) == sorted(ips)  # every recording, no duplicates, no stale entry
    assert clear(site, "--check").returncode == 0
    for ip in ips[::7]:
        assert relays(site.settings.tcp_cdb, ip)
    assert not [p for p in site.state.iterdir() if ".tmp." in p.name]


def cron(site: Site, *args: str, wait: str = "5") -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ["PATH"],
        "MAILDAEMONS_CONF": str(site.conf),
        "CLEAROPENSMTP": str(CLEAROPENSMTP),
        "CLEAROPENSMTP_WAIT": wait,
    }
    return subprocess.run(
        ["sh", str(CRON_WRAPPER), *args], env=env, capture_output=True, text=True, timeout=60
    )


def test_cron_wrapper(site: Site) -> None:
    assert subprocess.run(["sh", "-n", str(CRON_WRAPPER)]).returncode == 0
    now = int(time.time())
    write_open_smtp(site, [f"127.0.0.2:{RULE}\t{now - 500 * 60}", f"127.0.0.3:{RULE}\t{now}"])
    proc = cron(site)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")
    assert [e.ip for e in entries_of(site)] == ["127.0.0.3"]
    assert cron(site, "--minutes", "0").returncode == 0
    assert entries_of(site) == []
    # problems make it speak up and exit non-zero
    with site.settings.open_smtp.open("a") as fp:
        fp.write("garbage\n")
    proc = cron(site)
    assert proc.returncode == Exit.MALFORMED
    assert "malformed line kept" in proc.stderr
    with lock_held(site.settings.lock_file):
        proc = cron(site, wait="0")
    assert proc.returncode == Exit.LOCK_BUSY
    assert "clearopensmtp-cron: clearopensmtp failed with exit status 2" in proc.stderr


def test_cron_d_entry() -> None:
    lines = (REPO / "etc/cron.d/maildaemons-clearopensmtp").read_text().splitlines()
    jobs = [line.split(None, 6) for line in lines if line[:1] not in ("", "#") and "=" not in line]
    assert len(jobs) == 1
    assert jobs[0][5] == "root" and "clearopensmtp-cron" in jobs[0][6]
