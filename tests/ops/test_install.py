"""scripts/install, staged with --root into a temporary directory (the tests never touch the real
system): the venv and its commands, the links, the units and init scripts pointing at the prefix,
/etc/maildaemons and the directories with their modes, the integration files; a second run that
changes nothing a site made; --dry-run that changes nothing at all; and --uninstall that keeps
the mail and the config."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from common import config
from support.paths import REPO

INSTALL = REPO / "scripts/install"
# Not the default (/opt/maildaemons, which the sources name): the install rewrites every path.
PREFIX = "/srv/maildaemons"
DEFAULT_PREFIX = "/opt/maildaemons"
SBIN_COMMANDS = ("pop3d", "imapd", "imapgw", "msmpd", "mailstatd", "clearopensmtp")
UNITS = sorted(p.name for p in (REPO / "etc/systemd").glob("*.service"))
INIT_SCRIPTS = ("mailstatd", "pop3d", "imapd", "imapgw", "msmpd")
MAN_PAGES = sorted(p.name for p in (REPO / "man").glob("*.[158]"))
INTEGRATION = [
    "logrotate.d/maildaemons",
    "cron.d/maildaemons-clearopensmtp",
    "sysctl.d/maildaemons.conf",
    "tmpfiles.d/maildaemons.conf",
    # Whatever fail2ban files the source has (filters and jails), installed as they are.
    *sorted(
        str(p.relative_to(REPO / "etc"))
        for p in (REPO / "etc").glob("fail2ban/**/*")
        if p.is_file()
    ),
]
DIRECTORIES = {  # staged modes; owners are the real install's (maildaemons)
    "etc/maildaemons": 0o2770,
    "var/mail/maildaemons": 0o750,
    "var/lib/maildaemons": 0o750,
    "run/maildaemons": 0o755,
    "var/log/maildaemons": 0o750,
}


def install(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        ["sh", str(INSTALL), *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    return result


def tree(root: Path) -> set[str]:
    """Every path under `root`, but inside the venv's site-packages (pip's own business)."""
    skip = root / PREFIX.lstrip("/") / "lib"
    return {
        str(p.relative_to(root))
        for p in root.rglob("*")
        if not (p == skip or skip in p.parents) and "__pycache__" not in p.parts
    }


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


@pytest.fixture(scope="module")
def staged(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One staged install for the module's checks (a venv costs a pip install)."""
    root = tmp_path_factory.mktemp("stage") / "root"
    result = install("--root", str(root), "--prefix", PREFIX)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "maildaemons is installed in" in result.stdout
    return root


def test_the_venv_holds_the_suite_and_names_the_final_prefix(staged: Path) -> None:
    venv = staged / PREFIX.lstrip("/")
    for command in (*SBIN_COMMANDS, "msmp"):
        script = venv / "bin" / command
        assert script.read_text().splitlines()[0] == f"#!{PREFIX}/bin/python3", command
    assert str(staged) not in (venv / "pyvenv.cfg").read_text()
    version = subprocess.run(
        [str(venv / "bin/python3"), str(venv / "bin/pop3d"), "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert version.returncode == 0 and version.stdout.startswith("pop3d (maildaemons) ")
    assert os.access(venv / "bin/clearopensmtp-cron", os.X_OK)
    assert (venv / ".maildaemons-install").read_text() == f"prefix={PREFIX}\n"


def test_commands_and_man_pages_are_linked_where_path_and_man_look(staged: Path) -> None:
    links = {f"usr/local/sbin/{c}": f"{PREFIX}/bin/{c}" for c in SBIN_COMMANDS}
    links["usr/local/sbin/clearopensmtp-cron"] = f"{PREFIX}/bin/clearopensmtp-cron"
    links["usr/local/bin/msmp"] = f"{PREFIX}/bin/msmp"
    for page in MAN_PAGES:
        section = f"man{page[-1]}"
        links[f"usr/local/share/man/{section}/{page}"] = f"{PREFIX}/share/man/{section}/{page}"
    for name, target in links.items():
        assert os.readlink(staged / name) == target, name
        assert (staged / target.lstrip("/")).is_file(), target  # the link resolves once there
    if shutil.which("manpath") is not None:  # man looks in /usr/local/share/man by itself
        found = subprocess.run(["manpath", "-g"], capture_output=True, text=True, check=False)
        assert "/usr/local/share/man" in found.stdout.strip().split(":")


def test_units_and_init_scripts_run_the_prefix(staged: Path, tmp_path: Path) -> None:
    unit_dir = staged / "usr/local/lib/systemd/system"
    assert sorted(p.name for p in unit_dir.iterdir()) == UNITS
    for unit in UNITS:
        text = (unit_dir / unit).read_text()
        daemon = unit.removesuffix(".service")
        assert f"ExecStart={PREFIX}/bin/{daemon} -c /etc/maildaemons/maildaemons.conf" in text
        assert DEFAULT_PREFIX not in text
        # systemd would hand these directories back to root at every start (the unit runs as
        # root), taking them from the user the daemons drop to.
        assert not re.search(r"^(Runtime|State|Logs)Directory=", text, re.M), unit
        writable = re.search(r"^ReadWritePaths=(.*)$", text, re.M)
        assert writable
        assert ("/etc/maildaemons" in writable.group(1).split()) == (daemon == "msmpd"), unit
    for name in INIT_SCRIPTS:
        script = staged / "etc/init.d" / name
        assert mode(script) == 0o755
        assert f"FUNCTIONS=${{FUNCTIONS:-{PREFIX}/share/maildaemons/init-functions}}" in (
            script.read_text()
        )
    functions = staged / PREFIX.lstrip("/") / "share/maildaemons/init-functions"
    assert f"BIN=${{BIN:-{PREFIX}/bin}}" in functions.read_text()
    assert DEFAULT_PREFIX not in functions.read_text()
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd is not installed")
    # Verified as they will run: the prefix's paths taken from the staged tree.
    for unit in UNITS:
        text = (unit_dir / unit).read_text().replace(f"{PREFIX}/", f"{staged}{PREFIX}/")
        (tmp_path / unit).write_text(text)
        cmd = ["systemd-analyze", "verify", str(tmp_path / unit)]
        if shutil.which("man") is None:
            cmd.insert(2, "--man=no")
        env = {**os.environ, "MANPATH": str(staged / PREFIX.lstrip("/") / "share/man")}
        result = subprocess.run(
            cmd, capture_output=True, text=True, env=env, timeout=60, check=False
        )
        assert result.returncode == 0, result.stderr
        assert unit not in result.stderr, result.stderr


def test_config_users_admins_and_directories(staged: Path) -> None:
    etc = staged / "etc/maildaemons"
    assert {p.name: mode(p) for p in etc.iterdir()} == {
        "maildaemons.conf": 0o640,
        "maildaemons.conf.sample": 0o644,
        "users": 0o660,  # msmpd's ADD and DELE rewrite it
        "admins": 0o640,
    }
    assert (etc / "maildaemons.conf.sample").read_bytes() == (
        REPO / "etc/maildaemons.conf"
    ).read_bytes()
    parser = config.read_config(etc / "maildaemons.conf")
    assert parser.get("common", "user") == "maildaemons"
    assert parser.get("common", "group") == "maildaemons"
    for daemon in config.DAEMONS:
        config.Settings(daemon, parser, {"state_dir": "/nonexistent"}).validate()
    users = (etc / "users").read_text()
    assert users and all(line.startswith("#") for line in users.splitlines())  # no demo user
    assert all(line.startswith("#") for line in (etc / "admins").read_text().splitlines())
    for name, wanted in DIRECTORIES.items():
        assert (staged / name).is_dir() and mode(staged / name) == wanted, name
    # The directories are those the config names.
    assert parser.get("common", "mail_base") == "/var/mail/maildaemons"
    assert parser.get("common", "state_dir") == "/var/lib/maildaemons"
    assert parser.get("common", "run_dir") == "/run/maildaemons"
    tmpfiles = (staged / "etc/tmpfiles.d/maildaemons.conf").read_text()
    for name, wanted in DIRECTORIES.items():
        if name != "etc/maildaemons":
            assert re.search(
                rf"^d\s+/{name}\s+0?{wanted:o}\s+maildaemons\s+maildaemons", tmpfiles, re.M
            )


def test_integration_files_are_installed(staged: Path) -> None:
    for name in INTEGRATION:
        assert (staged / "etc" / name).read_bytes() == (REPO / "etc" / name).read_bytes(), name
        assert mode(staged / "etc" / name) == 0o644


def test_dry_run_changes_nothing(tmp_path: Path) -> None:
    root = tmp_path / "root"
    result = install("--dry-run", "--root", str(root))
    assert result.returncode == 0, result.stderr
    assert not root.exists()
    for step in (
        f"would run: python3 -m venv {root}{DEFAULT_PREFIX}",
        f"would link /usr/local/sbin/pop3d -> {DEFAULT_PREFIX}/bin/pop3d",
        "would install /usr/local/lib/systemd/system/pop3d.service",
        "would install /etc/maildaemons/maildaemons.conf",
        "would create /var/mail/maildaemons (mode 750)",
    ):
        assert step in result.stdout, step
    uninstall = install("--uninstall", "--dry-run", "--root", str(root))
    assert uninstall.returncode == 0 and not root.exists()


def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    for args in (["--prefix", "opt/md"], ["--prefix", "/"], ["--prefix", "/usr/"], ["--bogus"]):
        result = install(*args, "--root", str(tmp_path / "r"))
        assert result.returncode == 2, args
        assert not (tmp_path / "r").exists()
    if os.geteuid() == 0 and shutil.which("setpriv"):
        # Without --root it is an install on this system: refused at once for anyone but root.
        result = subprocess.run(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "sh", str(INSTALL)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 1
        assert "run it as root" in result.stderr


def test_again_is_idempotent_and_uninstall_keeps_mail_and_config(
    staged: Path, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    shutil.copytree(staged, root, symlinks=True)  # a staged tree of this test's own
    before = tree(root)
    # What a site does after installing: its config, users, a changed cron file, mail.
    conf = root / "etc/maildaemons/maildaemons.conf"
    conf.write_text(conf.read_text().replace("log = syslog", "log = /var/log/maildaemons/all.log"))
    (root / "etc/maildaemons/users").write_text("alice:{PLAIN}secret\n")
    cron = root / "etc/cron.d/maildaemons-clearopensmtp"
    cron.write_text(cron.read_text() + "# ours\n")
    message = root / "var/mail/maildaemons/alice/new/1700000000.M1P1.host"
    message.parent.mkdir(parents=True)
    message.write_text("Subject: kept\n\nbody\n")
    site = {p: p.read_bytes() for p in (conf, root / "etc/maildaemons/users", cron, message)}

    again = install("--root", str(root), "--prefix", PREFIX)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "installed /" not in again.stdout  # every file of the suite was already in place
    assert "kept /etc/maildaemons/users as it is" in again.stdout
    assert tree(root) == before | {
        "var/mail/maildaemons/alice",
        "var/mail/maildaemons/alice/new",
        "var/mail/maildaemons/alice/new/1700000000.M1P1.host",
    }
    assert {p: p.read_bytes() for p in site} == site

    removed = install("--uninstall", "--root", str(root), "--prefix", PREFIX)
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert not (root / PREFIX.lstrip("/")).exists()
    for gone in (
        "usr/local/lib/systemd/system/pop3d.service",
        "etc/init.d/pop3d",
        "usr/local/sbin/pop3d",
        "usr/local/bin/msmp",
        "usr/local/share/man/man8/pop3d.8",
        "etc/logrotate.d/maildaemons",
    ):
        assert not (root / gone).exists() and not (root / gone).is_symlink(), gone
    assert {p: p.read_bytes() for p in site} == site  # config, users, changed cron, mail
    assert (root / "etc/maildaemons/admins").exists()
    assert "kept /etc/cron.d/maildaemons-clearopensmtp: it was changed" in removed.stdout
    for name in DIRECTORIES:
        assert (root / name).is_dir(), name
    # Uninstalling twice is fine, and a prefix without the install's marker is left alone.
    (root / PREFIX.lstrip("/")).mkdir(parents=True)
    (root / PREFIX.lstrip("/") / "precious").write_text("not ours")
    twice = install("--uninstall", "--root", str(root), "--prefix", PREFIX)
    assert twice.returncode == 0 and f"left {PREFIX} alone" in twice.stdout
    assert (root / PREFIX.lstrip("/") / "precious").exists()
