"""README.md, driven from top to bottom on a fresh copy of the repository, as a newcomer types it:
every command it shows runs as printed, in order, in one shell, and prints what README says it
prints. So README cannot drift from the code.

How README is read (the rules are also in README's "Tests" section):
- A command is a line of a code block (indented or fenced) that starts with `$ `. A heredoc
  (`<<'EOF'` ... `EOF`) and a trailing backslash continue it on the next lines.
- The lines after a command, up to the next command or the end of the block, are its output. Each
  must match the real output line for line: `...` alone stands for any number of lines, `...`
  within a line for any text, and every run of digits for any number (pids, sizes, times).
- A command exits 0, unless it ends in a comment `# exits N`.
- An HTML comment `<!-- readme-test: ... -->` on the line before a code block says how to take
  it; a block with no command and no such comment fails the test, so nothing is left out
  silently:
    text                   not commands (a synopsis, a config excerpt, settings to type in)
    skip: REASON           commands that must not run here (as root on the real system)
    unprivileged           run as nobody when the test runs as root (getmail refuses root),
                           with var/ and var/clients/ open to it as /tmp is
    terminal "TEXT" KEYS   the one command runs in a pseudo-terminal until TEXT is on the
                           screen, then gets KEYS (an interactive program such as neomutt)

The default ports in commands (1110, 1143, 4711, 4321) are replaced by free ones, HOME is an empty
directory, and the suite is stopped at the end whatever happened.
"""

from __future__ import annotations

import contextlib
import os
import pty
import pwd
import re
import select
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from support.daemons import free_port
from support.paths import REPO

README = REPO / "README.md"
BIN = Path(sys.executable).parent
DEFAULT_PORTS = {"1110": "POP3_PORT", "1143": "IMAP_PORT", "4711": "GW_PORT", "4321": "MSMP_PORT"}
PORT_TOKEN = re.compile(r"(?<=[ :=])(1110|1143|4711|4321)\b")
MARKER = re.compile(r"^<!-- readme-test: (.*?) -->$")
HEREDOC = re.compile(r"<<-?\s*'?\"?(\w+)'?\"?")
EXITS = re.compile(r"\s#\s*exits (\d+)\b")
COMMAND_TIMEOUT = 90.0
DAEMONS = ("mailstatd", "pop3d", "imapd", "imapgw", "msmpd")


# -- reading README --------------------------------------------------------------------------


@dataclass
class Command:
    text: str  # as printed, continuation lines included, without the `$ `
    output: list[str] = field(default_factory=list)
    line: int = 0  # where it is in README

    @property
    def status(self) -> int:
        first = self.text.splitlines()[0]
        match = EXITS.search(first)
        return int(match.group(1)) if match else 0


@dataclass
class Block:
    line: int
    lines: list[str]
    marker: str | None
    commands: list[Command] = field(default_factory=list)


def code_blocks(text: str) -> Iterator[Block]:
    """Indented (4 spaces, after a blank line) and fenced code blocks, with the marker comment
    on the line before each (blank lines between are allowed)."""
    lines = text.splitlines()
    i, marker = 0, None
    while i < len(lines):
        line = lines[i]
        if match := MARKER.match(line.strip()):
            marker = match.group(1)
            i += 1
            continue
        if line.startswith("```"):
            end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
            yield Block(i + 1, lines[i + 1 : end], marker)
            i, marker = end + 1, None
            continue
        if line.startswith("    ") and i > 0 and not lines[i - 1].strip():
            start = i
            body = []
            while i < len(lines) and (lines[i].startswith("    ") or not lines[i].strip()):
                body.append(lines[i][4:])
                i += 1
            while body and not body[-1].strip():
                body.pop()
            yield Block(start + 1, body, marker)
            marker = None
            continue
        if line.strip() and not line.startswith("<!--"):
            marker = None
        i += 1


def parse_commands(block: Block) -> list[Command]:
    commands: list[Command] = []
    lines = block.lines
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.startswith("$ "):
            if commands:
                commands[-1].output.append(line)
            i += 1
            continue
        text, where = [line[2:]], block.line + i
        i += 1
        while text[-1].endswith("\\") and i < len(lines):
            text.append(lines[i])
            i += 1
        if heredoc := HEREDOC.search(text[0]):
            while i < len(lines) and lines[i] != heredoc.group(1):
                text.append(lines[i])
                i += 1
            text.append(lines[i])
            i += 1
        commands.append(Command("\n".join(text), line=where))
    return commands


def readme_blocks() -> list[Block]:
    blocks = list(code_blocks(README.read_text()))
    for block in blocks:
        block.commands = parse_commands(block)
    return blocks


def matches(shown: list[str], real: list[str]) -> bool:
    """README's output lines against the real ones: `...` lines, `...` in a line, any digits."""
    if not shown:
        return True
    head, rest = shown[0], shown[1:]
    if head.strip() == "...":
        return any(matches(rest, real[k:]) for k in range(len(real) + 1))
    if not real:
        return False
    pattern = ".*".join(
        re.sub(r"\d+", r"\\d+", re.escape(part).replace(r"\ ", " ")) for part in head.split("...")
    )
    return bool(re.fullmatch(pattern, real[0].rstrip())) and matches(rest, real[1:])


# -- the checks of README itself ---------------------------------------------------------------


def test_every_code_block_is_commands_or_marked() -> None:
    blocks = readme_blocks()
    assert any(block.commands for block in blocks)
    for block in blocks:
        kind = (block.marker or "").split(":")[0].split(" ")[0]
        assert kind in ("", "text", "skip", "unprivileged", "terminal"), (block.line, block.marker)
        if kind == "skip":
            assert block.marker and len(block.marker.split(":", 1)[1].strip()) > 10, block.line
        if not block.commands:
            assert kind in ("text", "skip"), f"README line {block.line}: commands or a marker"
        if kind == "text":
            assert not block.commands, f"README line {block.line}: text with commands"


def test_output_matching_rules() -> None:
    assert matches(["+OK ...", "...", "."], ["+OK hello", "a", "b", "."])
    assert matches(["Total connections: 12"], ["Total connections: 7"])
    assert not matches(["+OK 3 messages"], ["-ERR 3 messages"])
    assert not matches(["a", "b"], ["a"])
    assert matches(["..."], [])


# -- driving it --------------------------------------------------------------------------------


def fresh_copy() -> Path:
    """The tracked files as a fresh clone has them, in a directory anyone may enter (a block
    may run as nobody), with our venv in place of a new one (no network, no time)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, text=True, check=False
    )
    if listed.returncode != 0:
        pytest.skip("not a git checkout")
    top = Path(tempfile.mkdtemp(prefix="maildaemons-readme-"))
    top.chmod(0o755)
    for name in filter(None, listed.stdout.split("\0")):
        source = REPO / name
        if source.is_file():
            (top / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, top / name)
    (top / ".venv").symlink_to(BIN.parent)
    return top


class Shell:
    """One `sh` that runs README's commands in order: each is a file it sources, so `export`,
    `eval` and `cd` carry over to the next, as in a terminal."""

    def __init__(self, top: Path, env: dict[str, str]) -> None:
        self.top = top
        self.env = env
        self.work = top / ".readme-test"
        self.work.mkdir()
        self.count = 0
        self.proc = subprocess.Popen(
            ["sh"], cwd=top, env=env, stdin=subprocess.PIPE, text=True, start_new_session=True
        )

    def run(self, command: str, unprivileged: bool = False) -> tuple[int, str]:
        self.count += 1
        script = self.work / f"{self.count}.sh"
        out = self.work / f"{self.count}.out"
        done = self.work / f"{self.count}.rc"
        script.write_text(command + "\n")
        if unprivileged and os.geteuid() == 0:
            nobody = pwd.getpwnam("nobody")
            for shared in ("var", "var/clients"):  # where a client block makes its files: as /tmp
                with contextlib.suppress(FileNotFoundError):
                    (self.top / shared).chmod(0o1777)
            line = (
                f"setpriv --reuid={nobody.pw_uid} --regid={nobody.pw_gid} --clear-groups "
                f"env HOME={shlex.quote(str(self.work))} sh {shlex.quote(str(script))}"
            )
        else:
            line = f". {shlex.quote(str(script))}"
        assert self.proc.stdin is not None
        self.proc.stdin.write(
            f"{{ {line}\n}} >{shlex.quote(str(out))} 2>&1 </dev/null; "
            f"echo $? >{shlex.quote(str(done) + '.tmp')}; "
            f"mv {shlex.quote(str(done) + '.tmp')} {shlex.quote(str(done))}\n"
        )
        self.proc.stdin.flush()
        deadline = time.monotonic() + COMMAND_TIMEOUT
        while not done.exists():
            assert self.proc.poll() is None, f"the shell exited during {command!r}"
            assert time.monotonic() < deadline, f"{command!r} still runs after {COMMAND_TIMEOUT}s"
            time.sleep(0.05)
        return int(done.read_text()), out.read_text(errors="replace")

    def terminal(self, command: str, until: str, keys: str) -> tuple[int, str]:
        """The command in a pseudo-terminal (its environment: the shell's, as `env` prints it)."""
        status, environ = self.run("env -0")
        assert status == 0
        env = dict(item.split("=", 1) for item in environ.split("\0") if "=" in item)
        env["TERM"] = "xterm"
        pid, fd = pty.fork()
        if pid == 0:  # the child: exec, or leave at once
            try:
                os.chdir(self.top)
                os.execvpe("sh", ["sh", "-c", command], env)  # noqa: S606 (sh is the shell)
            finally:
                os._exit(127)
        screen = b""
        deadline = time.monotonic() + COMMAND_TIMEOUT
        try:
            while until.encode() not in screen and time.monotonic() < deadline:
                if select.select([fd], [], [], 0.2)[0]:
                    with contextlib.suppress(OSError):
                        screen += os.read(fd, 65536)
            assert until.encode() in screen, (
                f"{command!r} never showed {until!r}: {screen[-2000:]!r}"
            )
            os.write(fd, keys.encode())
            while time.monotonic() < deadline:
                finished, status = os.waitpid(pid, os.WNOHANG)
                if finished:
                    return os.waitstatus_to_exitcode(status), screen.decode(errors="replace")
                if select.select([fd], [], [], 0.2)[0]:
                    with contextlib.suppress(OSError):
                        screen += os.read(fd, 65536)
            raise AssertionError(f"{command!r} did not end after {keys!r}")
        finally:
            with contextlib.suppress(ProcessLookupError, ChildProcessError):
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            os.close(fd)

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)


def stop_suite(top: Path) -> None:
    """Whatever README started and did not stop: TERM by pidfile (ours only), then wait."""
    for name in DAEMONS:
        pidfile = top / "var" / "run" / f"{name}.pid"
        try:
            pid = int(pidfile.read_text().split()[0])
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            continue
        if name.encode() in cmdline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 15
            while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
                time.sleep(0.05)


def with_ports(text: str, ports: dict[str, int]) -> str:
    return PORT_TOKEN.sub(lambda m: str(ports[DEFAULT_PORTS[m.group(1)]]), text)


# The programs README's commands use besides the suite (tests/apt-packages installs them).
PROGRAMS = ("nc", "fetchmail", "getmail", "mbsync", "offlineimap", "neomutt", "curl", "setpriv")


def test_readme_from_top_to_bottom() -> None:
    if not (BIN / "pop3d").exists():
        pytest.skip("the tests do not run from the project's venv")
    missing = [name for name in PROGRAMS if shutil.which(name) is None]
    assert not missing, f"README uses {missing}: scripts/test installs tests/apt-packages"
    free: set[int] = set()
    while len(free) < 4:
        free.add(free_port())
    ports = dict(zip(DEFAULT_PORTS.values(), sorted(free), strict=True))
    top = fresh_copy()
    home = top / ".home"
    home.mkdir()
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("MAILDAEMONS_CONF", "MSMP_USER", "MSMP_PASSWORD", "VIRTUAL_ENV")
    }
    env.update({"HOME": str(home), **{name: str(port) for name, port in ports.items()}})
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if p != str(BIN))
    shell = Shell(top, env)
    ran = 0
    try:
        for block in readme_blocks():
            kind = (block.marker or "").split(":")[0].split(" ")[0]
            if kind in ("text", "skip"):
                continue
            for command in block.commands:
                text = with_ports(command.text, ports)
                if kind == "terminal":
                    until, keys = shlex.split(block.marker or "")[1:3]
                    status, output = shell.terminal(text, until, keys)
                else:
                    status, output = shell.run(text, unprivileged=kind == "unprivileged")
                ran += 1
                where = f"README line {command.line}: $ {command.text}"
                assert status == command.status, f"{where}\nexit {status}\n{output}"
                if kind != "terminal":
                    real = output.splitlines()
                    assert matches(command.output, real), (
                        f"{where}\nREADME shows:\n"
                        + "\n".join(command.output)
                        + "\nit printed:\n"
                        + output
                    )
        assert ran >= 20, f"only {ran} commands ran"
    finally:
        shell.close()
        stop_suite(top)
        shutil.rmtree(top, ignore_errors=True)
