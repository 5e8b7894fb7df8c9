"""The house rules read off the code's AST: the layer order, no import circles, module and function sizes.

Every import counts, the ones inside functions included. ``check(root)`` returns the violations as lines, so
a test can show that an injected upward import or circle is caught (``tests/test_architecture.py``)."""
from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

# Lowest first. A module may import its own package, ``benchmark.interfaces``, ``registry`` and the packages of
# lower layers; packages that share a layer are peers and import nothing of each other.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("interfaces",),
    ("runtime",),
    ("store",),
    ("config",),
    ("data",),
    ("train", "probe", "scoring"),
    ("pipeline",),
    ("executors",),
    ("driver",),
    ("outputs", "perf"),
    ("cli",),
    ("__init__", "__main__"),  # the public API and ``python -m benchmark``
)
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
# (module, function): why it stays longer than MAX_FUNCTION_LINES. At most three.
LONG_FUNCTIONS: dict[tuple[str, str], str] = {}


@dataclass(frozen=True)
class Import:
    source: str  # the importing module, dotted
    target: str  # the imported module, dotted (a package's __init__ is the package's name)
    line: int


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def modules(root: Path) -> dict[str, Path]:
    """Every module of ``benchmark`` and ``registry`` under ``root`` by dotted name."""
    out = {}
    for top in ("benchmark", "registry"):
        for path in sorted((root / top).rglob("*.py")):
            out[module_name(root, path)] = path
    return out


def _resolve(name: str, known: dict[str, Path]) -> str | None:
    """The project module an import names (``from benchmark.data import nvjpeg`` names a submodule)."""
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def imports(root: Path) -> list[Import]:
    """Every import of a project module by a project module, at any depth of the AST."""
    known = modules(root)
    out = []
    for source, path in known.items():
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    pkg = source.split(".")[: len(source.split(".")) - node.level + (1 if is_pkg else 0)]
                    base = ".".join(pkg + ([base] if base else []))
                names = [f"{base}.{a.name}" for a in node.names]
            for name in names:
                target = _resolve(name, known)
                if target and target != source:
                    out.append(Import(source, target, node.lineno))
    return sorted(set(out), key=lambda i: (i.source, i.line, i.target))


def _package(module: str) -> str:
    """``benchmark.data.decode`` -> ``data``; ``benchmark`` -> ``__init__``; ``registry.x`` -> ``registry``."""
    parts = module.split(".")
    if parts[0] == "registry":
        return "registry"
    return parts[1] if len(parts) > 1 else "__init__"


def _layer(package: str) -> int:
    for i, names in enumerate(LAYERS):
        if package in names:
            return i
    raise KeyError(package)


def layer_violations(found: list[Import]) -> list[str]:
    out = []
    for imp in found:
        src, dst = _package(imp.source), _package(imp.target)
        if src == dst:
            continue
        if src == "registry":
            if imp.target != "benchmark.interfaces":
                out.append(f"{imp.source}:{imp.line} imports {imp.target}: registry may import only "
                           "benchmark.interfaces")
            continue
        if dst == "registry":
            continue
        try:
            ls, ld = _layer(src), _layer(dst)
        except KeyError as exc:
            out.append(f"{imp.source}: package {exc.args[0]!r} is in no layer of tests/architecture.LAYERS")
            continue
        if ld > ls:
            out.append(f"{imp.source}:{imp.line} imports {imp.target}: upward ({src} is below {dst})")
        elif ld == ls:
            out.append(f"{imp.source}:{imp.line} imports {imp.target}: {src} and {dst} are peers")
    return out


def cycles(found: list[Import]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    graph: dict[str, set[str]] = {}
    for imp in found:
        graph.setdefault(imp.source, set()).add(imp.target)
        graph.setdefault(imp.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    comps: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                comps.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(comps)


def size_violations(root: Path) -> list[str]:
    out = []
    for name, path in modules(root).items():
        text = path.read_text()
        n = len(text.splitlines())
        if n > MAX_MODULE_LINES:
            out.append(f"{name}: {n} lines (at most {MAX_MODULE_LINES})")
        for node in ast.walk(ast.parse(text, str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES and (name, node.name) not in LONG_FUNCTIONS:
                    out.append(f"{name}.{node.name}: {length} lines (at most {MAX_FUNCTION_LINES})")
    return out


def check(root: Path) -> list[str]:
    """Every violation of the house rules in the tree under ``root``, one line each."""
    found = imports(root)
    out = layer_violations(found)
    out += [f"import circle: {' -> '.join(c)}" for c in cycles(found)]
    return out + size_violations(root)
