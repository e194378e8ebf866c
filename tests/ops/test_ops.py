"""Operations: man pages, systemd units, LSB init scripts, the quick start, log rotation and
process titles, each checked the way an administrator or a newcomer would use them.

Every daemon here is a real background process (double fork, pidfile); each test stops what it
started by pid, also when it fails.
"""

from __future__ import annotations

import configparser
import contextlib
import json
import os
import poplib
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from common import config
from common.relay import settings as relay_settings
from support.paths import REPO

BIN = Path(sys.executable).parent
MAN = REPO / "man"
SAMPLE_CONFIG = REPO / "etc/maildaemons.conf"
COMMANDS = {  # console script -> its man page
    "pop3d": "pop3d.8",
    "imapd": "imapd.8",
    "imapgw": "imapgw.8",
    "msmpd": "msmpd.8",
    "mailstatd": "mailstatd.8",
    "msmp": "msmp.1",
    "clearopensmtp": "clearopensmtp.8",
}
DAEMONS = ("mailstatd", "pop3d", "imapd", "imapgw", "msmpd")
FORKING = ("pop3d", "imapd", "imapgw", "msmpd")  # a child per connection; mailstatd has none
MAN_PAGES = sorted(p.name for p in MAN.glob("*.[0-9]"))
UNITS = sorted(p.name for p in (REPO / "etc/systemd").iterdir())
INIT_SCRIPTS = sorted(p.name for p in (REPO / "etc/init.d").iterdir())
SHELL_SCRIPTS = [f"etc/init.d/{name}" for name in INIT_SCRIPTS] + [
    f"scripts/{p.name}"
    for p in sorted((REPO / "scripts").iterdir())
    if p.read_bytes().startswith(b"#!/bin/sh")
]
OPTION = re.compile(r"(?<![\w-])--?[A-Za-z][\w-]*")


# -- helpers -----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def run(cmd: list[str], timeout: float = 30.0, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout, check=False, **kwargs
    )


def alive(pid: int) -> bool:
    """The process exists and is not a zombie (a double-forked daemon is not our child)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def read_pid(pidfile: Path) -> int | None:
    try:
        return int(pidfile.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def stop_daemon(pid: int | None, names: tuple[str, ...] = DAEMONS) -> None:
    """TERM (then KILL) one daemon this test started; only if it still is one of ours."""
    if pid is None or not alive(pid) or not any(n in cmdline(pid) for n in names):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    with contextlib.suppress(AssertionError):
        wait_for(lambda: not alive(pid), timeout=15, what=f"pid {pid} to stop")
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def section(text: str, name: str) -> str:
    """The roff source of one `.SH` section."""
    match = re.search(rf"^\.SH \"?{name}\"?\n(.*?)(?=^\.SH |\Z)", text, re.S | re.M)
    assert match, f"no {name} section"
    return match.group(1)


def plain(roff_line: str) -> str:
    """A roff line without its macro, font escapes and quotes, `\\-` as `-`."""
    text = re.sub(r"^\.\w+\s*", "", roff_line)
    text = re.sub(r"\\f[BIRP]", "", text).replace('"', "").replace("\\-", "-")
    for escape, char in (("\\(dq", '"'), ("\\c", ""), ("\\&", ""), ("\\ ", " ")):
        text = text.replace(escape, char)
    return text


def man_options(page: Path) -> set[str]:
    """The options named in the tags (the line after each `.TP`) of the OPTIONS section."""
    lines = section(page.read_text(), "OPTIONS").splitlines()
    found: set[str] = set()
    for i, line in enumerate(lines[:-1]):
        if line.startswith(".TP"):
            found.update(OPTION.findall(plain(lines[i + 1])))
    return found


def help_options(text: str) -> set[str]:
    """The options of a docopt usage text's `Options:` section (the part before the help)."""
    found: set[str] = set()
    in_options = False
    for line in text.splitlines():
        if line.strip().lower().startswith("options:"):
            in_options = True
        elif in_options and not line.strip():
            break
        elif in_options and line.strip().startswith("-"):
            head = re.split(r"\s{2,}", line.strip(), maxsplit=1)[0]
            found.update(OPTION.findall(head))
    return found


# -- man pages ---------------------------------------------------------------------------------


def test_every_command_has_a_man_page() -> None:
    assert set(MAN_PAGES) == {*COMMANDS.values(), "maildaemons.conf.5"}


@pytest.mark.parametrize("page", MAN_PAGES)
def test_man_page_renders_without_warnings(page: str) -> None:
    if shutil.which("man") is None:
        pytest.skip("man-db is not installed")
    result = run(
        ["man", "--warnings", "-l", str(MAN / page)],
        env={**os.environ, "MANWIDTH": "80", "MANPAGER": "cat", "PAGER": "cat"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert "NAME" in result.stdout and "SEE ALSO" in result.stdout


@pytest.mark.parametrize("page", MAN_PAGES)
def test_man_page_has_the_sections(page: str) -> None:
    text = (MAN / page).read_text()
    name, number = page.rsplit(".", 1)
    assert text.startswith(f".TH {name.upper()} {number} ")
    wanted = ["NAME", "SYNOPSIS", "DESCRIPTION", "ENVIRONMENT", "FILES", "SEE ALSO"]
    if page != "maildaemons.conf.5":
        wanted += ["OPTIONS", "EXIT STATUS", "EXAMPLES"]
    if name in DAEMONS:
        wanted += ["SIGNALS"]
        for words in ("double fork", "pidfile", "exit 0", "exits 1"):
            assert words in section(text, "DESCRIPTION"), (page, words)
    if name in FORKING:
        for words in ("one child", "SIGCHLD", "waitpid", "Dead Child pid"):
            assert words in section(text, "DESCRIPTION"), (page, words)
        for signame in ("SIGTERM", "SIGHUP", "SIGINT"):
            assert signame in section(text, "SIGNALS"), (page, signame)
    for heading in wanted:
        assert re.search(rf"^\.SH \"?{heading}\"?$", text, re.M), (page, heading)
    # Every program reads the config file $MAILDAEMONS_CONF names when -c is not given.
    assert ".B MAILDAEMONS_CONF\n" in section(text, "ENVIRONMENT"), page
    if name != "maildaemons.conf":
        # netcat sessions that end once the server has answered (-N: shut down on EOF).
        assert "| nc \\-N 127.0.0.1 " in section(text, "EXAMPLES"), page
        assert "nc \\-q" not in text, page


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_help_exits_0_and_matches_the_man_page(command: str) -> None:
    result = run([str(BIN / command), "--help"])
    assert result.returncode == 0, result.stderr
    listed = help_options(result.stdout)
    assert {"-h", "--help", "-v", "--version"} <= listed
    page = MAN / COMMANDS[command]
    documented = man_options(page)
    assert listed - documented == set(), f"{page.name} lacks options of --help"
    assert documented - listed == set(), f"{page.name} documents options --help lacks"
    synopsis = set(OPTION.findall(plain(section(page.read_text(), "SYNOPSIS"))))
    assert synopsis <= listed, f"{page.name} SYNOPSIS names {synopsis - listed}"


@pytest.mark.parametrize(
    "argv",
    [
        ["pop3d", "-f"],
        ["imapd", "-f"],
        ["imapgw", "-f"],
        ["msmpd", "-f"],
        ["mailstatd", "-f"],
        ["mailstatd", "--dump"],
        ["msmp", "STAT"],
        ["clearopensmtp", "--dry-run"],
    ],
    ids=" ".join,
)
def test_every_command_reads_the_file_maildaemons_conf_names(
    argv: list[str], tmp_path: Path
) -> None:
    """Without -c, every program reads $MAILDAEMONS_CONF (a file named there must exist)."""
    missing = tmp_path / "absent.conf"
    env = {**os.environ, "MAILDAEMONS_CONF": str(missing), "MSMP_USER": "a", "MSMP_PASSWORD": "b"}
    result = run([str(BIN / argv[0]), *argv[1:]], env=env)
    assert result.returncode != 0
    assert f"config file {missing} (from $MAILDAEMONS_CONF) not found" in result.stderr


def man_config_keys() -> dict[str, dict[str, str]]:
    """maildaemons.conf.5: `.SS [section]`, then `.TP` + `.B key = default` per key."""
    keys: dict[str, dict[str, str]] = {}
    current = None
    lines = (MAN / "maildaemons.conf.5").read_text().splitlines()
    for i, line in enumerate(lines):
        if line.startswith(".SS ["):
            current = keys.setdefault(line[5:].rstrip("]"), {})
        elif line.startswith(".SH"):
            current = None
        elif current is not None and line.startswith(".TP"):
            key, _, value = plain(lines[i + 1]).partition("=")
            current[key.strip()] = value.strip()
    return keys


def declared_config_keys() -> dict[str, dict[str, str]]:
    """common/config.py's schema: section -> key -> default."""
    keys: dict[str, dict[str, str]] = {}
    for key in config.KEYS:
        keys.setdefault(key.section, {})[key.name] = key.default
    return keys


def sample_config_keys() -> dict[str, dict[str, str]]:
    """etc/maildaemons.conf: each key is an active `key = default` line under its section."""
    sample = config.read_config(SAMPLE_CONFIG)
    return {name: dict(sample.items(name)) for name in sample.sections()}


# What the sample sets on purpose instead of the built-in default: a deployment drops root.
SAMPLE_SETS = {("common", "user"): "maildaemons"}


def test_sample_config_names_exactly_the_declared_keys_with_their_defaults() -> None:
    expected = declared_config_keys()
    for (section, name), value in SAMPLE_SETS.items():
        assert expected[section][name] != value
        expected[section][name] = value
    assert sample_config_keys() == expected


def test_sample_config_examples_name_keys_of_their_section() -> None:
    """Commented `#key = value` lines are examples (an override of a [common] key in a daemon's
    section): each names a key its section may hold."""
    section = None
    for line in SAMPLE_CONFIG.read_text().splitlines():
        if line.startswith("["):
            section = line.strip("[]")
        elif match := re.match(r"#(\w+) = ", line):
            assert section and match.group(1) in config.allowed_in(section), line


@pytest.mark.parametrize("daemon", config.DAEMONS)
def test_sample_config_is_valid_for_every_daemon(daemon: str) -> None:
    parser = config.read_config(SAMPLE_CONFIG)
    config.Settings(daemon, parser, {"state_dir": "/nonexistent"}).validate()


def test_config_man_page_names_exactly_the_declared_keys_with_their_defaults() -> None:
    assert man_config_keys() == declared_config_keys()


def test_relay_defaults_are_the_schemas() -> None:
    assert config.SCHEMA["relay", "rule"].default == relay_settings.DEFAULT_RULE
    assert (
        int(config.SCHEMA["relay", "clear_minutes"].default) == relay_settings.DEFAULT_CLEAR_MINUTES
    )
    assert (
        float(config.SCHEMA["relay", "lock_timeout"].default) == relay_settings.DEFAULT_LOCK_TIMEOUT
    )


def test_setup_cfg_installs_every_man_page() -> None:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(REPO / "setup.cfg", encoding="utf-8")
    if not parser.has_section("options.data_files"):
        pytest.skip("setup.cfg has no [options.data_files] yet")
    installed = {}
    for target, files in parser.items("options.data_files"):
        for name in files.replace(",", " ").split():
            installed[name] = target
    for page in MAN_PAGES:
        assert installed.get(f"man/{page}") == f"share/man/man{page[-1]}", page


# -- systemd units ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def unit_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The units as a site installs them: console scripts from our venv, man pages in a MANPATH."""
    root = tmp_path_factory.mktemp("systemd")
    units = root / "units"
    units.mkdir()
    for name in UNITS:
        text = (REPO / "etc/systemd" / name).read_text().replace("/opt/maildaemons/bin/", f"{BIN}/")
        (units / name.removesuffix(".example")).write_text(text)
    for page in MAN_PAGES:
        target = root / "man" / f"man{page[-1]}"
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(MAN / page, target / page)
    return root


@pytest.mark.parametrize("unit", UNITS)
def test_systemd_unit_verifies(unit: str, unit_dir: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd is not installed")
    path = unit_dir / "units" / unit.removesuffix(".example")
    cmd = ["systemd-analyze", "verify"]
    if shutil.which("man") is None:
        cmd.append("--man=no")  # Documentation=man: is checked with man(1)
    result = run([*cmd, str(path)], env={**os.environ, "MANPATH": str(unit_dir / "man")})
    assert result.returncode == 0, result.stderr
    assert path.name not in result.stderr, result.stderr
    for page in re.findall(r"man:([\w.-]+)\((\d)\)", path.read_text()):
        assert (MAN / f"{page[0]}.{page[1]}").is_file(), page


# -- init scripts -------------------------------------------------------------------------------


@pytest.mark.parametrize("script", SHELL_SCRIPTS)
def test_shell_script_parses(script: str) -> None:
    result = run(["sh", "-n", str(REPO / script)])
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("script", SHELL_SCRIPTS)
def test_shell_script_has_no_bashisms(script: str) -> None:
    if shutil.which("checkbashisms") is None:
        pytest.skip("checkbashisms (devscripts) is not installed")
    result = run(["checkbashisms", str(REPO / script)])
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", [n for n in INIT_SCRIPTS if n != "maildaemons-functions"])
def test_init_script_header(name: str) -> None:
    text = (REPO / "etc/init.d" / name).read_text()
    assert text.startswith("#!/bin/sh\n")
    assert "### BEGIN INIT INFO" in text and "### END INIT INFO" in text
    assert re.search(rf"^# Provides:\s+{name}$", text, re.M)
    assert re.search(rf"^NAME={name}$", text, re.M)
    assert os.access(REPO / "etc/init.d" / name, os.X_OK)


def write_site(root: Path, section_name: str, port: int, extra: str = "") -> Path:
    """A config for one daemon on 127.0.0.1 with everything under `root`; user demo/demo."""
    for sub in ("mail/demo/new", "mail/demo/cur", "mail/demo/tmp", "state", "run"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "mail/demo/new/1700000000.M1P1.host").write_text(
        "From: a@example.org\nSubject: hello\n\nbody\n"
    )
    (root / "mail/held").mkdir(exist_ok=True)
    (root / "users").write_text("demo:{PLAIN}demo\nheld:{PLAIN}held\n")
    conf = root / "maildaemons.conf"
    conf.write_text(
        f"[common]\nmail_base = {root}/mail\nusers_file = {root}/users\n"
        f"admins_file = {root}/users\nstate_dir = {root}/state\nrun_dir = {root}/run\n"
        f"auth_failure_delay = 0\nshutdown_grace = 5\n\n"
        f"[{section_name}]\nlisten = 127.0.0.1\nport = {port}\n{extra}"
    )
    return conf


def pop3_greeting(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        return sock.recv(512)


def test_init_script_start_status_reload_stop(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "pop3d.log"
    conf = write_site(tmp_path, "pop3d", port, f"log = {log}\n")
    pidfile = tmp_path / "run" / "pop3d.pid"
    env = {
        **os.environ,
        "FUNCTIONS": str(REPO / "etc/init.d/maildaemons-functions"),
        "BIN": str(BIN),
        "CONF": str(conf),
        "PIDFILE": str(pidfile),
    }
    script = str(REPO / "etc/init.d/pop3d")

    def init(action: str) -> subprocess.CompletedProcess[str]:
        return run(["sh", script, action], env=env)

    try:
        assert init("status").returncode == 3  # LSB: not running
        started = init("start")
        assert started.returncode == 0, started.stdout + started.stderr
        pid = read_pid(pidfile)
        assert pid and alive(pid)
        assert pop3_greeting(port).startswith(b"+OK ")
        status = init("status")
        assert status.returncode == 0 and str(pid) in status.stdout
        again = init("start")
        assert again.returncode == 0 and "already running" in again.stdout
        assert read_pid(pidfile) == pid
        assert init("reload").returncode == 0
        wait_for(lambda: "configuration reloaded" in log.read_text(), what="reload in the log")
        assert alive(pid) and pop3_greeting(port).startswith(b"+OK ")
        stopped = init("stop")
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        assert not alive(pid) and not pidfile.exists()
        assert init("status").returncode == 3
        assert init("stop").returncode == 0  # LSB: stopping a stopped service succeeds
        assert init("reload").returncode == 7  # LSB: not running
        dead = subprocess.Popen(["true"])
        dead.wait()
        pidfile.write_text(f"{dead.pid}\n")
        assert init("status").returncode == 1  # LSB: dead, but the pidfile exists
        pidfile.unlink()
        assert init("bogus").returncode == 3
    finally:
        stop_daemon(read_pid(pidfile), ("pop3d",))


# -- the quick start ----------------------------------------------------------------------------


def repo_copy(target: Path) -> Path:
    """The tracked files, as a fresh clone has them, with our venv (nothing gets installed)."""
    listed = run(["git", "ls-files", "-z"], cwd=REPO)
    if listed.returncode != 0:
        pytest.skip("not a git checkout")
    for name in filter(None, listed.stdout.split("\0")):
        source = REPO / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    (target / ".venv").symlink_to(BIN.parent)
    return target


def replay(line: str, cwd: Path) -> str:
    result = run(["sh", "-c", line], cwd=cwd, timeout=30)
    assert result.returncode == 0, f"{line}\n{result.stdout}{result.stderr}"
    return result.stdout


def test_quickstart_as_a_newcomer(tmp_path: Path) -> None:
    if shutil.which("nc") is None:
        pytest.skip("netcat-openbsd is not installed")
    if not (BIN / "pop3d").exists():
        pytest.skip("the tests do not run from the project's venv")
    top = repo_copy(tmp_path / "r")
    free: set[int] = set()
    while len(free) < 4:  # four different ports
        free.add(free_port())
    ports = dict(zip(("POP3_PORT", "IMAP_PORT", "GW_PORT", "MSMP_PORT"), sorted(free), strict=True))
    env = {**os.environ, **{k: str(v) for k, v in ports.items()}}
    for var in ("MSMP_USER", "MSMP_PASSWORD"):
        env.pop(var, None)
    run_dir = top / "var" / "run"
    pids: dict[str, int] = {}
    try:
        first = run([str(top / "scripts/quickstart")], env=env, cwd=top, timeout=60)
        assert first.returncode == 0, first.stdout + first.stderr
        for name in DAEMONS:
            pid = read_pid(run_dir / f"{name}.pid")
            assert pid and alive(pid), f"{name} is not running"
            pids[name] = pid
            assert f"{name}: started (pid {pid})" in first.stdout

        lines = [line.strip() for line in first.stdout.splitlines()]
        sessions = {
            int(m.group(1)): line
            for line in lines
            if line.startswith("printf ")
            and (m := re.search(r"\| nc -N 127\.0\.0\.1 (\d+)$", line))
        }
        assert set(sessions) == set(ports.values()), first.stdout

        pop3 = replay(sessions[ports["POP3_PORT"]], top)
        assert pop3.startswith("+OK ") and "+OK Logged in, 3 messages" in pop3
        assert "Subject: Welcome to maildaemons" in pop3 and "signing off" in pop3
        imap = replay(sessions[ports["IMAP_PORT"]], top)
        assert imap.startswith("* OK [CAPABILITY IMAP4rev1")
        for expected in ("a OK", "b OK [READ-WRITE]", "* 3 FETCH", "c OK FETCH", "d OK"):
            assert expected in imap, imap
        gateway = replay(sessions[ports["GW_PORT"]], top)
        assert gateway.startswith("OK IMAP daemon client ready (DMIS Rulez!)...\n")
        assert "* 1 FETCH" in gateway and "Subject: Try the 4711 gateway" in gateway
        assert "OK FETCH completed" in gateway
        msmp = replay(sessions[ports["MSMP_PORT"]], top)
        assert msmp.startswith("+OK MSMP1") and "+OK Logged in" in msmp
        assert "Total connections:" in msmp and "+OK Goodbye" in msmp
        # The export line puts the commands on PATH and names the config for every command.
        exports = [line for line in lines if line.startswith("export PATH=")]
        assert len(exports) == 1, first.stdout
        assert replay("scripts/quickstart env", top).strip() == exports[0]
        assert f'MAILDAEMONS_CONF="{top}/var/maildaemons.conf"' in exports[0]
        assert "msmp STAT" in lines and "mailstatd --dump" in lines
        assert "Total connections:" in replay(f"{exports[0]}; msmp STAT", top)
        dump = json.loads(replay(f"{exports[0]}; mailstatd --dump", top))
        assert dump["protocols"]["msmp"]["logins_ok"] >= 2

        second = run([str(top / "scripts/quickstart")], env=env, cwd=top, timeout=60)
        assert second.returncode == 0, second.stdout + second.stderr
        for name, pid in pids.items():
            assert f"{name}: already running (pid {pid})" in second.stdout
            assert alive(pid)
        assert sorted(sessions.values()) == sorted(
            line.strip()
            for line in second.stdout.splitlines()
            if line.strip().startswith("printf ")
        )

        kill = [line for line in lines if line.startswith("kill $(cat ")]
        assert len(kill) == 1, first.stdout
        replay(kill[0], top)
        wait_for(lambda: not any(alive(pid) for pid in pids.values()), what="every daemon gone")
        wait_for(lambda: not list(run_dir.glob("*.pid")), what="every pidfile removed")
    finally:
        for name in DAEMONS:
            stop_daemon(read_pid(run_dir / f"{name}.pid"), (name,))
            stop_daemon(pids.get(name), (name,))


def test_quickstart_without_netcat_prints_the_apt_get_line(tmp_path: Path) -> None:
    """On a machine without nc, and no way to install it (no apt-get it may run here), the quick
    start still starts the suite and says exactly how to get netcat."""
    if not (BIN / "pop3d").exists():
        pytest.skip("the tests do not run from the project's venv")
    top = repo_copy(tmp_path / "r")
    hidden = {"nc", "nc.openbsd", "netcat", "apt-get"}
    tools = tmp_path / "bin"  # every program of /usr/bin but those
    tools.mkdir()
    for program in Path("/usr/bin").iterdir():
        if program.name not in hidden:
            (tools / program.name).symlink_to(program)
    ports = sorted({free_port() for _ in range(8)})[:4]
    assert len(ports) == 4
    env = {
        **os.environ,
        "PATH": str(tools),
        **dict(
            zip(("POP3_PORT", "IMAP_PORT", "GW_PORT", "MSMP_PORT"), map(str, ports), strict=True)
        ),
    }
    run_dir = top / "var" / "run"
    try:
        result = run([str(top / "scripts/quickstart")], env=env, cwd=top, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "netcat-openbsd (its Debian and Ubuntu name) is needed" in result.stderr
        assert "The nc lines above need OpenBSD netcat" in result.stdout
        assert all(read_pid(run_dir / f"{name}.pid") for name in DAEMONS)
        # With apt-get there but no root and no sudo, the exact line is printed.
        (tools / "apt-get").symlink_to("/usr/bin/apt-get")
        (tools / "id").unlink()
        (tools / "id").write_text("#!/bin/sh\necho 1000\n")
        (tools / "id").chmod(0o755)
        (tools / "sudo").unlink(missing_ok=True)
        again = run([str(top / "scripts/quickstart")], env=env, cwd=top, timeout=60)
        assert again.returncode == 0, again.stdout + again.stderr
        assert (
            "The Debian package netcat-openbsd is needed for the netcat sessions printed below;"
            " install it with:\n  sudo apt-get install -y --no-install-recommends netcat-openbsd\n"
        ) in again.stderr
    finally:
        for name in DAEMONS:
            stop_daemon(read_pid(run_dir / f"{name}.pid"), (name,))


# -- a pop3d in the background ------------------------------------------------------------------


@pytest.fixture
def background_pop3d(tmp_path: Path) -> Iterator[Callable[..., tuple[int, int]]]:
    """Start pop3d as a real daemon; returns (master pid, port). Stopped by pid afterwards."""
    pidfiles: list[Path] = []

    def start(extra: str = "") -> tuple[int, int]:
        port = free_port()
        conf = write_site(tmp_path, "pop3d", port, extra)
        pidfile = tmp_path / "run" / "pop3d.pid"
        pidfiles.append(pidfile)
        result = run([str(BIN / "pop3d"), "-c", str(conf)])
        assert result.returncode == 0, result.stderr
        pid = read_pid(pidfile)
        assert pid and alive(pid)
        return pid, port

    try:
        yield start
    finally:
        for pidfile in pidfiles:
            pid = read_pid(pidfile)
            kids = children(pid) if pid else []
            stop_daemon(pid, ("pop3d",))
            for kid in kids:
                stop_daemon(kid, ("pop3d",))


def pop3_session(port: int) -> None:
    client = poplib.POP3("127.0.0.1", port, timeout=10)
    client.user("demo")
    client.pass_("demo")
    client.quit()


SESSION_END = re.compile(r"\{(\d+)\} \S+ session end")


def test_log_rotation_loses_no_line(tmp_path: Path, background_pop3d: Any) -> None:
    log = tmp_path / "pop3d.log"
    rotated = tmp_path / "pop3d.log.1"
    pid, port = background_pop3d(f"log = {log}\n")
    for _ in range(5):
        pop3_session(port)
    held = poplib.POP3("127.0.0.1", port, timeout=10)  # a session across the rotation
    held.user("held")
    held.pass_("held")
    os.rename(log, rotated)  # what logrotate does, then its postrotate HUP
    os.kill(pid, signal.SIGHUP)
    wait_for(
        lambda: log.exists() and "configuration reloaded" in log.read_text(),
        what="the reopened log",
    )
    for _ in range(5):
        pop3_session(port)
    held.quit()

    def ended() -> tuple[set[int], set[int]]:
        old = {int(n) for n in SESSION_END.findall(rotated.read_text())}
        return old, {int(n) for n in SESSION_END.findall(log.read_text())}

    wait_for(lambda: set.union(*ended()) == set(range(1, 12)), what="11 session end lines")
    old, new = ended()
    assert set(range(1, 6)) <= old
    assert set(range(7, 12)) <= new  # sessions after the HUP write to the new file


def test_process_titles(background_pop3d: Any) -> None:
    pid, port = background_pop3d()
    wait_for(lambda: cmdline(pid) == "pop3d: master (0 children)", what="master title")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        assert sock.recv(512).startswith(b"+OK")
        kids = wait_for(lambda: children(pid), what="a child")
        assert len(kids) == 1
        wait_for(
            lambda: cmdline(kids[0]).startswith("pop3d: 127.0.0.1"),
            what=f"child title, got {cmdline(kids[0])!r}",
        )
        wait_for(lambda: cmdline(pid) == "pop3d: master (1 children)", what="master title")
        sock.sendall(b"QUIT\r\n")
        assert sock.recv(512).startswith(b"+OK")
    wait_for(lambda: cmdline(pid) == "pop3d: master (0 children)", what="child reaped")
