"""Several hosts on one machine for the scale-out demo (tests/scale/test_scale_demo.py): network
namespaces joined by a bridge, a thread that enters one, the shared mail base bind-mounted on
each backend's own path, the daemons of a backend, and HAProxy in front.

Layout (the namespaces variant; 198.18.0.0/24 is the benchmarking range, RFC 2544):

    client ns 198.18.0.10 ──┐
                            ├── bridge in the lb ns 198.18.0.1: HAProxy :110 :143, send-proxy-v2
    backend b1 198.18.0.11 ─┤       pop3d, imapd, mailstatd (metrics on the ns's own loopback)
    backend b2 198.18.0.12 ─┘       pop3d, imapd, mailstatd
                 <tmp>/shared/mail, bind-mounted as <tmp>/b1/mail and <tmp>/b2/mail

The loopback variant puts the two backends on 127.0.0.1 with ports of their own, HAProxy on
127.0.0.1, and the clients on 127.0.0.2: in one namespace of its own where namespaces can be made
(so that it runs here too, with its own event queue length), else on the machine's loopback.

Everything made here is undone by `close()`, which the fixtures call in `finally`: processes are
stopped (TERM, then KILL) before the mounts and namespaces they live in are removed.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from support.daemons import BIN, wait_for

CLONE_NEWNET = 0x40000000
NETNS_DIR = Path("/run/netns")
SUBNET = "198.18.0"
_libc = ctypes.CDLL(None, use_errno=True)


def run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=30)


def enter(netns: str | None) -> None:
    """Move the calling thread (only it) into the network namespace `netns` (None: stay)."""
    if netns is None:
        return
    fd = os.open(NETNS_DIR / netns, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns into {netns}: {os.strerror(err)}")
    finally:
        os.close(fd)


def in_netns(netns: str | None, work: Callable[[], Any]) -> Any:
    """Run `work` on a thread of its own inside `netns`; its result or its exception."""
    with ThreadPoolExecutor(1, initializer=enter, initargs=(netns,)) as pool:
        return pool.submit(work).result()


def namespaces_unavailable() -> str:
    """Why network namespaces cannot be used here ('' when they can). MAILDAEMONS_SCALE_NO_NETNS=1
    pretends they cannot, to run the loopback variant as such a machine does."""
    if os.environ.get("MAILDAEMONS_SCALE_NO_NETNS"):
        return "MAILDAEMONS_SCALE_NO_NETNS is set"
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "no `ip` command (iproute2)"
    probe = f"mdprobe{os.getpid()}"
    try:
        run("ip", "netns", "add", probe)
    except (OSError, subprocess.SubprocessError) as exc:
        detail = getattr(exc, "stderr", "") or str(exc)
        return f"cannot create a network namespace: {detail.strip()}"
    try:
        in_netns(probe, lambda: None)
    except OSError as exc:
        return f"cannot enter a network namespace: {exc}"
    finally:
        subprocess.run(["ip", "netns", "del", probe], capture_output=True, timeout=30)
    return ""


def listening(pid: int, port: int) -> bool:
    """Whether process `pid` listens on TCP `port`, seen in its own network namespace's table
    (without connecting: a connection would be one more session)."""
    for table in ("tcp", "tcp6"):
        with contextlib.suppress(OSError):
            for row in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
                fields = row.split()
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    return True
    return False


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@dataclass
class Host:
    """A backend host: its namespace (None on loopback), its address, its own directories (the
    mail base is the shared one, mounted on its own path), its ports and its processes."""

    name: str
    netns: str | None
    address: str
    root: Path
    pop3_port: int
    imap_port: int
    metrics_port: int
    procs: dict[str, Proc] = field(default_factory=dict)

    @property
    def mail(self) -> Path:
        return self.root / "mail"

    @property
    def state(self) -> Path:
        return self.root / "state"

    @property
    def stats_socket(self) -> Path:
        return self.root / "run" / "mailstatd.sock"

    def log(self, daemon: str) -> str:
        return self.procs[daemon].text()


class Site:
    """The hosts of one demo and everything to undo."""

    def __init__(self, root: Path, tag: str) -> None:
        self.root = root
        self.tag = tag  # keeps names apart from another run's
        self.namespaces: list[str] = []
        self.mounts: list[Path] = []
        self.procs: list[Proc] = []
        self.hosts: list[Host] = []
        self.lb_netns: str | None = None
        self.client_netns: str | None = None
        self.backend_netns: dict[str, str | None] = {"b1": None, "b2": None}
        self.backend_address = {"b1": "127.0.0.1", "b2": "127.0.0.1"}
        self.lb_address = "127.0.0.1"
        self.client_address = "127.0.0.2"
        self.shared = root / "shared" / "mail"
        self.shared.mkdir(parents=True)

    # -- the network ---------------------------------------------------------------------

    def build_namespaces(self) -> None:
        """lb (with the bridge), client, b1, b2, each joined to the bridge by a veth pair."""
        lb = f"{self.tag}lb"
        self._netns(lb)
        run("ip", "-n", lb, "link", "set", "lo", "up")
        run("ip", "-n", lb, "link", "add", "br0", "type", "bridge")
        run("ip", "-n", lb, "addr", "add", f"{SUBNET}.1/24", "dev", "br0")
        run("ip", "-n", lb, "link", "set", "br0", "up")
        self.lb_netns, self.lb_address = lb, f"{SUBNET}.1"
        for role, last in (("c", 10), ("b1", 11), ("b2", 12)):
            netns = f"{self.tag}{role}"
            self._netns(netns)
            here, there = f"v{self.tag}{role}", f"v{self.tag}{role}p"
            run("ip", "link", "add", here, "type", "veth", "peer", "name", there)
            run("ip", "link", "set", here, "netns", netns)
            run("ip", "link", "set", there, "netns", lb)
            run("ip", "-n", netns, "addr", "add", f"{SUBNET}.{last}/24", "dev", here)
            run("ip", "-n", netns, "link", "set", here, "up")
            run("ip", "-n", netns, "link", "set", "lo", "up")
            run("ip", "-n", lb, "link", "set", there, "master", "br0")
            run("ip", "-n", lb, "link", "set", there, "up")
        self.client_netns, self.client_address = f"{self.tag}c", f"{SUBNET}.10"
        self.backend_netns = {"b1": f"{self.tag}b1", "b2": f"{self.tag}b2"}
        self.backend_address = {"b1": f"{SUBNET}.11", "b2": f"{SUBNET}.12"}

    def build_loopback(self, isolated: bool) -> None:
        """Every host on loopback: in one namespace of its own when `isolated`."""
        if isolated:
            netns = f"{self.tag}lo"
            self._netns(netns)
            run("ip", "-n", netns, "link", "set", "lo", "up")
            self.lb_netns = self.client_netns = netns
            self.backend_netns = {"b1": netns, "b2": netns}
            self.tune(netns)

    def tune(self, netns: str) -> None:
        """mailstatd's queue of events, as etc/sysctl.d/ sets it on a host (per namespace)."""
        run("ip", "netns", "exec", netns, "sysctl", "-q", "-w", "net.unix.max_dgram_qlen=512")

    def _netns(self, name: str) -> None:
        run("ip", "netns", "add", name)
        self.namespaces.append(name)

    def add_host(self, name: str, ports: tuple[int, int, int]) -> Host:
        """A backend: b1 or b2."""
        netns = self.backend_netns[name]
        host = Host(name, netns, self.backend_address[name], self.root / name, *ports)
        for sub in ("run", "state"):
            (host.root / sub).mkdir(parents=True)
        host.mail.mkdir()
        # The shared mail base as a host sees it: mounted on a path of its own (as an NFS mount
        # would be); the store never learns that the two are one.
        run("mount", "--bind", str(self.shared), str(host.mail))
        self.mounts.append(host.mail)
        if netns is not None and netns != self.lb_netns:
            self.tune(netns)
        self.hosts.append(host)
        return host

    # -- processes -----------------------------------------------------------------------

    def spawn(self, name: str, netns: str | None, cmd: list[str], log: Path) -> Proc:
        prefix = ["ip", "netns", "exec", netns] if netns else []
        with open(log, "wb") as out:
            popen = subprocess.Popen(  # `ip netns exec` execs: this pid is the program's
                prefix + cmd, stdout=out, stderr=subprocess.STDOUT, cwd=log.parent
            )
        proc = Proc(name, popen, log)
        self.procs.append(proc)
        return proc

    def start_daemon(self, host: Host, daemon: str, config: Path) -> Proc:
        proc = self.spawn(
            f"{host.name}-{daemon}",
            host.netns,
            [str(BIN / daemon), "-f", "-c", str(config)],
            host.root / f"{daemon}.log",
        )
        host.procs[daemon] = proc
        return proc

    def wait_listening(self, proc: Proc, *ports: int) -> None:
        def ready() -> bool:
            if proc.popen.poll() is not None:
                raise AssertionError(f"{proc.name} exited {proc.popen.returncode}: {proc.text()}")
            return all(listening(proc.popen.pid, port) for port in ports)

        wait_for(ready, timeout=30, what=f"{proc.name} listening on {ports}")

    # -- undoing -------------------------------------------------------------------------

    def close(self) -> None:
        for proc in reversed(self.procs):
            if proc.popen.poll() is None:
                proc.popen.send_signal(signal.SIGTERM)
        for proc in reversed(self.procs):
            try:
                proc.popen.wait(15)
            except subprocess.TimeoutExpired:
                proc.popen.kill()
                proc.popen.wait(5)
        for mount in reversed(self.mounts):
            subprocess.run(["umount", str(mount)], capture_output=True, timeout=30)
        for netns in reversed(self.namespaces):
            subprocess.run(["ip", "netns", "del", netns], capture_output=True, timeout=30)


@contextlib.contextmanager
def threads_in(netns: str | None, count: int) -> Iterator[ThreadPoolExecutor]:
    """A pool of `count` threads, each inside `netns` (the client host)."""
    with ThreadPoolExecutor(count, initializer=enter, initargs=(netns,)) as pool:
        yield pool
