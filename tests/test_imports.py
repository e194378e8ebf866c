"""The direction of imports (issue 12): no cycles in common/, the stats client knows nothing of the
collector, and the 4711 gateway imports none of the IMAP server. Read from the source with `ast`,
imports inside functions included, so a cycle cannot hide in one."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("common", "imapd", "pop3d", "msmpd")


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


@pytest.mark.parametrize("name", sorted(m for m in FILES if m.startswith("common")))
def test_no_cycle_in_common(name: str) -> None:
    assert name not in reachable(name)


def test_common_imports_no_protocol() -> None:
    for name in FILES:
        if name.startswith("common"):
            assert all(other.startswith("common") for other in GRAPH[name]), name


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
