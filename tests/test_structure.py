"""The architecture's rules, checked on the source (README "Code map"): imports run one way with no
cycle, and protocol code asks the store instead of touching files."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("common", "pop3d", "imapd", "msmpd")
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


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            name = ".".join(path.relative_to(REPO).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def imports(path: Path) -> Iterator[str]:
    """Every absolute import in the file, at any depth (an import inside a function counts)."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def import_graph() -> dict[str, set[str]]:
    known = modules()
    return {
        name: {d for d in imports(path) if d in known and d != name} for name, path in known.items()
    }


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
    assert cycles(import_graph()) == []


def test_imports_run_one_way() -> None:
    wrong = []
    for module, deps in import_graph().items():
        top = module.split(".")[0]
        for dep in deps:
            target = dep.split(".")[0]
            if top == "common" and target != "common":
                wrong.append(f"{module} -> {dep} (common knows no protocol)")
            elif top != "common" and target not in ("common", top):
                wrong.append(f"{module} -> {dep} (protocols do not import each other)")
    assert wrong == []


def test_gateway_does_not_import_the_imap_server() -> None:
    wrong = [
        f"{module} -> {dep}"
        for module, deps in import_graph().items()
        if module.startswith("imapd.gateway")
        for dep in deps
        if dep.startswith("imapd") and not dep.startswith("imapd.gateway")
    ]
    assert wrong == []


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
