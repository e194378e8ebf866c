"""The architecture's rules, read from the source with `ast` (README "Code map"): no import cycle
anywhere (imports inside functions count, so none can hide there), common knows no protocol and
protocols do not import each other, the master imports only the stats client, the 4711 gateway
imports none of the IMAP server, and protocol code asks the store instead of touching files."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.paths import REPO

PACKAGES = ("common", "imapd", "pop3d", "msmpd")
PROTOCOLS = ("pop3d", "imapd", "msmpd")
# File-system calls that protocol code must leave to common/store.
FS_MODULE_CALLS = {
    "os": {
        "stat",
        "lstat",
        "rename",
        "replace",
        "unlink",
        "remove",
        "listdir",
        "scandir",
        "mkdir",
        "makedirs",
        "link",
        "symlink",
        "utime",
        "rmdir",
        "chmod",
        "chown",
        "truncate",
    },
    "shutil": None,
}  # None: every function of the module
FS_PATH_METHODS = {
    "touch",
    "mkdir",
    "read_bytes",
    "read_text",
    "write_bytes",
    "write_text",
    "iterdir",
    "unlink",
    "rmdir",
    "symlink_to",
    "hardlink_to",
    "is_dir",
    "is_file",
    "glob",
    "rglob",
}
# Protocol modules that legitimately touch something that is not mail: a terminal, a program.
NOT_MAIL = {"msmpd/client.py": {"open"}, "pop3d/transformer.py": set()}


def module_files() -> dict[str, Path]:
    files = {}
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            parts = path.relative_to(REPO).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            files[name] = path
    return files


FILES = module_files()


def imports_of(name: str) -> set[str]:
    """Our modules that `name` imports: `from a.b import c` counts a.b, and a.b.c when c is one."""
    path = FILES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {m for m in found if m in FILES and m != name}


GRAPH = {name: imports_of(name) for name in FILES}


def reachable(name: str) -> set[str]:
    seen: set[str] = set()
    todo = [name]
    while todo:
        for other in GRAPH[todo.pop()]:
            if other not in seen:
                seen.add(other)
                todo.append(other)
    return seen


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for dep in graph[node]:
            if dep not in index:
                visit(dep)
                low[node] = min(low[node], low[dep])
            elif dep in stack:
                low[node] = min(low[node], index[dep])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles() -> None:
    assert cycles(GRAPH) == []


def test_imports_run_one_way() -> None:
    wrong = []
    for module, deps in GRAPH.items():
        top = module.split(".")[0]
        for dep in deps:
            target = dep.split(".")[0]
            if top == "common" and target != "common":
                wrong.append(f"{module} -> {dep} (common knows no protocol)")
            elif top != "common" and target not in ("common", top):
                wrong.append(f"{module} -> {dep} (protocols do not import each other)")
    assert wrong == []


def test_the_master_imports_only_the_stats_client() -> None:
    assert GRAPH["common.stats"] <= {"common"}
    assert not any(m.startswith("common.stats.") for m in reachable("common.server"))


def test_the_gateway_imports_no_imap_server() -> None:
    gateway = [m for m in FILES if m.startswith("imapd.gateway")]
    assert "imapd.gateway.main" in gateway
    for name in gateway:
        server = {m for m in reachable(name) if m.startswith("imapd")}
        server -= {"imapd.strings", *gateway}
        assert not server, f"{name} reaches {sorted(server)}"


def file_system_calls(path: Path) -> Iterator[str]:
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Name) and func.id == "open":
            yield f"open() at line {node.lineno}"
        elif isinstance(func, ast.Attribute):
            owner = func.value
            if isinstance(owner, ast.Name) and owner.id in FS_MODULE_CALLS:
                names = FS_MODULE_CALLS[owner.id]
                if names is None or func.attr in names:
                    yield f"{owner.id}.{func.attr}() at line {node.lineno}"
            elif (
                isinstance(owner, ast.Attribute)
                and isinstance(owner.value, ast.Name)
                and owner.value.id == "os"
                and owner.attr == "path"
                and func.attr not in ("normpath", "join", "basename")
            ):
                yield f"os.path.{func.attr}() at line {node.lineno}"
            elif func.attr in FS_PATH_METHODS:
                yield f".{func.attr}() at line {node.lineno}"


@pytest.mark.parametrize("package", PROTOCOLS)
def test_protocol_code_asks_the_store(package: str) -> None:
    """No module of a protocol touches the file system itself (DESIGN.md "Storage")."""
    found = []
    for path in sorted((REPO / package).rglob("*.py")):
        relative = path.relative_to(REPO).as_posix()
        if relative in NOT_MAIL and not NOT_MAIL[relative]:
            continue
        allowed = NOT_MAIL.get(relative, set())
        found += [
            f"{relative}: {call}"
            for call in file_system_calls(path)
            if call.split("(")[0] not in allowed
        ]
    assert found == []
