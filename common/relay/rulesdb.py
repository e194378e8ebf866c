"""tcp.smtp.cdb, the rules tcpserver reads: built from tcp.smtp plus the open-smtp entries the way
vpopmail's update_rules() has tcprules build it, read back, and asked whether it lets an entry
relay.

The build is ours (common/relay/tcprules.py and cdb.py, byte for byte what tcprules writes) unless
`[relay] tcprules` names the real program; either way the new cdb replaces the old one by rename.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import subprocess
from pathlib import Path

from common.relay.cdb import HEADER_SIZE, CdbError, CdbReader, write_cdb
from common.relay.errors import RulesBuildError, UnreadableFileError
from common.relay.files import read_optional, replace_file
from common.relay.opensmtp import Entry
from common.relay.settings import RelaySettings
from common.relay.tcprules import Instructions, RuleSyntaxError, compile_rules, lookup

RELAYCLIENT = b"RELAYCLIENT"


def rules_text(settings: RelaySettings, relay_entries: list[Entry]) -> bytes:
    """What vpopmail's update_rules() feeds tcprules: tcp.smtp, then `<ip>:<rule>` per entry.

    Static rules come first, so a site's own rule for an address wins over a relay entry.
    """
    static = read_optional(settings.tcp_rules)
    if static and not static.endswith(b"\n"):
        static += b"\n"
    relay = "".join(f"{e.ip}:{e.rule}\n" for e in relay_entries).encode("latin-1")
    return static + relay


def rebuild_cdb(settings: RelaySettings, relay_entries: list[Entry], timeout: float) -> None:
    """Compile tcp.smtp plus the entries into tcp.smtp.cdb, replaced atomically.

    A syntax error in tcp.smtp fails the whole build and keeps the old cdb, as tcprules does:
    silently leaving out a site's rule could open or close access it never meant to.
    """
    text = rules_text(settings, relay_entries)
    if settings.tcprules:
        _run_tcprules(settings, text, timeout)
        return
    try:
        records = compile_rules(text)
    except RuleSyntaxError as exc:
        raise RulesBuildError(f"{settings.tcp_rules}: {exc}") from None
    replace_file(settings.tcp_cdb, lambda fp: write_cdb(fp, records))


def _run_tcprules(settings: RelaySettings, text: bytes, timeout: float) -> None:
    """`tcprules tcp.smtp.cdb tmp` with the rules on stdin; it fsyncs and renames by itself."""
    target = settings.tcp_cdb
    # Named, not created: tcprules creates it with its own mode (0644 under umask 022). We hold
    # the relay lock, so a pid-based name (vpopmail's way) cannot clash with another build.
    tmp = f"{target}.tmp.{os.getpid()}"
    argv = [*shlex.split(settings.tcprules or "tcprules"), str(target), tmp]
    try:
        proc = subprocess.run(
            argv, input=text, capture_output=True, timeout=timeout, check=False, umask=0o022
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise RulesBuildError(f"{argv[0]}: {exc}") from None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)  # gone already when tcprules succeeded
    if proc.returncode != 0:
        why = proc.stderr.decode("latin-1", "replace").strip().splitlines()
        raise RulesBuildError(f"{argv[0]} exited {proc.returncode}: {why[-1] if why else ''}")


def read_cdb(path: Path) -> CdbReader:
    try:
        return CdbReader.from_file(path)
    except OSError as exc:
        raise UnreadableFileError(f"cannot read {path}: {exc.strerror}") from None
    except CdbError as exc:
        raise UnreadableFileError(f"{path}: {exc}") from None


EMPTY_CDB = CdbReader(bytes(HEADER_SIZE))


def lets_relay(found: Instructions | None, wanted: Instructions) -> bool:
    """Whether the rule tcpserver applies (`found`; None: no rule) gives what an entry asked.

    qmail-smtpd relays whenever RELAYCLIENT is set, whatever its value, so for the usual rules
    that is the test; a site rule without RELAYCLIENT must come out as recorded.
    """
    have = found or Instructions()
    names = {name for name, _ in wanted.env}
    if RELAYCLIENT in names:
        return not have.deny and RELAYCLIENT in have.environment()
    return have.deny == wanted.deny and set(wanted.env) <= set(have.environment().items())


def cdb_lets_relay(reader: CdbReader, entry: Entry) -> bool:
    match = lookup(reader, entry.ip)
    return lets_relay(None if match is None else match[1], entry.instructions())
