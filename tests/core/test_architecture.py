"""The import graph keeps its shape (docs/architecture.md, "Dependency rules").

Read with ``ast`` from ``src/`` (nothing is imported), counting every import:
module level, inside functions and under ``TYPE_CHECKING`` alike (a type-only
import is still an arrow). Each rule reports every violation with its file
and line; the checker itself is tried on a small planted tree.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).parents[2]
SRC = ROOT / "src"

# nothing below the agent may import it (DESIGN: components depend on deskcorder.host)
BELOW_AGENT = (
    "capture",
    "storage",
    "upload",
    "platform",
    "policy",
    "control",
    "collector",
    "host",
    "watchdog",
    "events",
    "errors",
    "identity",
    "devicekey",
)
# collector -> replay -> dataset: these read what the collector stores through their own
# protocols (dataset's CollectorReader), never by importing it
LAYERED_BELOW_COLLECTOR = ("replay", "dataset")
# where per-OS code may live: the platform backends, the login-service installers,
# the collector's own OS tuning, and the machine policy's per-OS paths and stores
OS_CODE_ALLOWED = ("platform", "service", "collector", "policy")
OS_LIBRARIES = frozenset(
    {
        "ctypes", "msvcrt", "winreg", "_winapi", "winsound", "fcntl", "termios", "tty",
        "resource", "pwd", "grp", "posix", "nt", "win32api", "win32con", "win32gui",
        "pywintypes", "comtypes", "Xlib", "gi", "dbus", "objc", "AppKit", "Quartz",
        "Foundation", "Cocoa", "ApplicationServices", "CoreFoundation", "pynput",
    }
)  # fmt: skip


@dataclass(frozen=True)
class Import:
    source: str  # importing module
    target: str  # imported module (inside the tree) or top-level name (outside)
    path: Path
    line: int

    def where(self, root: Path) -> str:
        return f"{self.path.relative_to(root)}:{self.line}"


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules(root: Path) -> dict[str, Path]:
    return {module_name(p, root): p for p in sorted(root.rglob("*.py"))}


def imports(root: Path) -> Iterator[Import]:
    """Every import in the tree: to a module of the tree when it names one."""
    known = modules(root)

    for name, path in known.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                for alias in node.names:  # import a.b.c: the module a.b.c
                    yield Import(name, alias.name, path, node.lineno)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                for alias in node.names:  # a submodule, else a name of the module
                    full = f"{base}.{alias.name}" if base else alias.name
                    yield Import(name, full if full in known else base, path, node.lineno)


def cycles(root: Path) -> list[list[Import]]:
    """The imports inside each strongly connected group of modules (Tarjan)."""
    known = modules(root)
    edges: dict[str, list[Import]] = {m: [] for m in known}
    for imp in imports(root):
        if imp.target in known and imp.target != imp.source:
            edges[imp.source].append(imp)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def visit(m: str) -> None:  # recursion depth is bounded by the number of modules
        index[m] = low[m] = len(index)
        stack.append(m)
        on_stack.add(m)
        for imp in edges[m]:
            if imp.target not in index:
                visit(imp.target)
                low[m] = min(low[m], low[imp.target])
            elif imp.target in on_stack:
                low[m] = min(low[m], index[imp.target])
        if low[m] == index[m]:
            group = set()
            while True:
                top = stack.pop()
                on_stack.discard(top)
                group.add(top)
                if top == m:
                    break
            if len(group) > 1:
                groups.append(group)

    for m in known:
        if m not in index:
            visit(m)
    return [[i for m in sorted(g) for i in edges[m] if i.target in g] for g in groups]


def in_area(module: str, top: str, areas: tuple[str, ...]) -> bool:
    return any(module == f"{top}.{a}" or module.startswith(f"{top}.{a}.") for a in areas)


def violations(root: Path, top: str = "deskcorder") -> list[str]:
    out = []
    for cycle in cycles(root):
        names = sorted({i.source for i in cycle})
        out.append(f"import cycle between {', '.join(names)}:")
        out += [f"  {i.where(root)}: {i.source} imports {i.target}" for i in cycle]
    for imp in imports(root):
        if imp.target == f"{top}.agent" and in_area(imp.source, top, BELOW_AGENT):
            out.append(f"{imp.where(root)}: {imp.source} imports {top}.agent (use {top}.host)")
        if in_area(imp.source, top, LAYERED_BELOW_COLLECTOR) and in_area(
            imp.target, top, ("collector",)
        ):
            out.append(f"{imp.where(root)}: {imp.source} imports {imp.target} (collector is above)")
        if imp.target.split(".")[0] in OS_LIBRARIES and not in_area(
            imp.source, top, OS_CODE_ALLOWED
        ):
            out.append(f"{imp.where(root)}: OS library {imp.target} outside platform/")
    for name, path in modules(root).items():
        if in_area(name, top, OS_CODE_ALLOWED):
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            platform_attr = (
                isinstance(node, ast.Attribute)
                and node.attr == "platform"
                and isinstance(node.value, ast.Name)
                and node.value.id == "sys"
            )
            platform_name = isinstance(node, ast.ImportFrom) and (
                node.module == "sys" and any(a.name == "platform" for a in node.names)
            )
            if platform_attr or platform_name:
                rel = path.relative_to(root)
                out.append(f"{rel}:{node.lineno}: sys.platform outside platform/")  # type: ignore[attr-defined]
    return out


def test_the_package_keeps_its_dependency_rules() -> None:
    found = violations(SRC)
    assert not found, "\n" + "\n".join(found)


def test_the_checker_reports_each_planted_violation(tmp_path: Path) -> None:
    pkg = tmp_path / "deskcorder"
    files = {
        "__init__.py": "",
        "agent.py": "from deskcorder.capture import shots\n",
        "capture/__init__.py": "",
        "capture/shots.py": (
            "from __future__ import annotations\n"
            "import sys\n"
            "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n"
            "    from deskcorder.agent import Agent\n"
            "WIN = sys.platform == 'win32'\n"
            "def probe() -> None:\n"
            "    import ctypes.util\n"
        ),
        "capture/a.py": "from . import b\n",
        "capture/b.py": "from .a import thing\n",
        "platform/__init__.py": "import sys, ctypes\nWIN = sys.platform == 'win32'\n",
        "collector/__init__.py": "",
        "collector/store.py": "",
        "dataset/__init__.py": "from deskcorder.collector.store import Store\n",
    }
    for name, text in files.items():
        (pkg / name).parent.mkdir(parents=True, exist_ok=True)
        (pkg / name).write_text(text)
    found = violations(tmp_path)
    assert found == [
        "import cycle between deskcorder.agent, deskcorder.capture.shots:",
        "  deskcorder/agent.py:1: deskcorder.agent imports deskcorder.capture.shots",
        "  deskcorder/capture/shots.py:5: deskcorder.capture.shots imports deskcorder.agent",
        "import cycle between deskcorder.capture.a, deskcorder.capture.b:",
        "  deskcorder/capture/a.py:1: deskcorder.capture.a imports deskcorder.capture.b",
        "  deskcorder/capture/b.py:1: deskcorder.capture.b imports deskcorder.capture.a",
        "deskcorder/capture/shots.py:5: deskcorder.capture.shots imports deskcorder.agent "
        "(use deskcorder.host)",
        "deskcorder/capture/shots.py:8: OS library ctypes.util outside platform/",
        "deskcorder/dataset/__init__.py:1: deskcorder.dataset imports "
        "deskcorder.collector.store (collector is above)",
        "deskcorder/capture/shots.py:6: sys.platform outside platform/",
    ], "\n".join(found)


def layout_names(text: str, heading: str) -> set[str]:
    """Top-level names in the ``src/deskcorder/`` block under ``heading``."""
    block = text.split(heading, 1)[1].split("```", 2)[1]
    lines = block.splitlines()
    start = lines.index("src/deskcorder/")
    return {
        line.split()[0].rstrip("/")
        for line in lines[start + 1 :]
        if line.startswith("  ") and not line.startswith("   ") and line.strip()
    }


def test_the_documented_layouts_match_the_tree() -> None:
    pkg = SRC / "deskcorder"
    skip = {"__init__.py", "__main__.py", "py.typed", "__pycache__"}
    tree = {p.name.removesuffix(".py") if p.suffix == ".py" else p.name for p in pkg.iterdir()}
    tree = {n for n in tree if n not in {s.removesuffix(".py") for s in skip}}
    tree = {n for n in tree if not n.endswith(".so") and not n.startswith(".")}
    for doc, heading in (
        ("README.md", "## Source layout"),
        ("docs/architecture.md", "## Package layout and dependency rules"),
    ):
        named = {n.removesuffix(".py") for n in layout_names((ROOT / doc).read_text(), heading)}
        assert named == tree, f"{doc}: missing {sorted(tree - named)}, stale {sorted(named - tree)}"
