"""Check the imports between the project's modules: cycles, layers, private names.

    python scripts/check_imports.py            # fusion/ and dashboard/ of this repository
    python scripts/check_imports.py --json     # the same findings as one JSON object
    python scripts/check_imports.py --root DIR pkg_a pkg_b

Reads every ``.py`` file under the named packages with ``ast`` (nothing is imported or run) and
collects every import statement, those inside functions (lazy imports) included. Reports:

- import cycles between the project's modules (each strongly connected component of the import
  graph, with a set of cycles through it that covers all of its edges); imports under
  ``if TYPE_CHECKING:`` are not run, so they make no cycle;
- layer violations: a module of ``fusion`` importing ``dashboard`` or ``dash``;
- private names used across modules: ``from .x import _y`` where ``_y`` is not a module, and
  ``mod._y`` where ``mod`` names another project module imported in that file.

An import ``a.b.c`` counts as an edge to ``a.b.c`` only (not to the packages above it), as in most
import linters. Exit status: 0 when nothing is found, 1 when something is, 2 when a file cannot be
parsed.
"""
from __future__ import annotations

import argparse
import ast
import json
import sys
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path

DEFAULT_PACKAGES = ("fusion", "dashboard")
# package -> top-level names its modules must never import
FORBIDDEN = {"fusion": ("dashboard", "dash")}


@dataclass(frozen=True)
class Edge:
    """One import of project module ``target`` by ``source`` at ``line``; ``lazy``: inside a function."""

    source: str
    target: str
    line: int
    lazy: bool


@dataclass
class Findings:
    """What the check found; ``clean`` when nothing."""

    modules: int = 0
    cycles: list[dict] = field(default_factory=list)
    layer_violations: list[dict] = field(default_factory=list)
    private_names: list[dict] = field(default_factory=list)
    parse_errors: list[dict] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.cycles or self.layer_violations or self.private_names or self.parse_errors)


def find_modules(root: Path, packages: tuple[str, ...]) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` file under ``root/<package>``."""
    modules: dict[str, Path] = {}
    for package in packages:
        base = root / package
        files = [base] if base.suffix == ".py" else sorted(base.rglob("*.py"))
        for path in files:
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def is_private(name: str) -> bool:
    """``_x`` but not a dunder such as ``__version__``."""
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


class ImportCollector(ast.NodeVisitor):
    """Walks one module's tree; collects its imports (with context) and ``module._name`` uses."""

    def __init__(self, module: str, is_package: bool, modules: dict[str, Path]):
        self.module, self.modules = module, modules
        self.package = module if is_package else module.rpartition(".")[0]
        self.imports: list[tuple[str, str | None, int, bool, bool]] = []  # (module, name, line, lazy, typing)
        self.aliases: dict[str, str] = {}  # local name -> project module it is bound to
        self.attributes: list[tuple[str, str, int]] = []  # (project module, private attribute, line)
        self.depth = 0
        self.typing = 0

    def resolve(self, level: int, name: str | None) -> str:
        if level == 0:
            return name or ""
        base = self.package.split(".") if self.package else []
        base = base[: len(base) - (level - 1)] if level > 1 else base
        return ".".join(base + ([name] if name else []))

    def visit_FunctionDef(self, node: ast.AST) -> None:
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_AsyncFunctionDef = visit_Lambda = visit_FunctionDef

    def visit_If(self, node: ast.If) -> None:
        if is_type_checking(node.test):
            self.typing += 1
            for child in node.body:
                self.visit(child)
            self.typing -= 1
            for child in node.orelse:
                self.visit(child)
        else:
            self.generic_visit(node)

    def record(self, target: str, name: str | None, line: int) -> None:
        self.imports.append((target, name, line, self.depth > 0, self.typing > 0))

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.record(alias.name, None, node.lineno)
            if alias.asname:
                if alias.name in self.modules:
                    self.aliases[alias.asname] = alias.name
            else:
                top = alias.name.split(".")[0]
                self.aliases.setdefault(top, top)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = self.resolve(node.level, node.module)
        for alias in node.names:
            full = f"{base}.{alias.name}" if base else alias.name
            if full in self.modules:  # a submodule: an edge to it, and a module bound to a name
                self.record(full, None, node.lineno)
                self.aliases[alias.asname or alias.name] = full
            else:
                self.record(base, alias.name, node.lineno)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        dotted = dotted_name(node.value)
        if dotted is not None and is_private(node.attr):
            head, _, rest = dotted.partition(".")
            if head in self.aliases:
                target = self.aliases[head] + ("." + rest if rest else "")
                if target in self.modules and target != self.module:
                    self.attributes.append((target, node.attr, node.lineno))
        self.generic_visit(node)


def dotted_name(node: ast.expr) -> str | None:
    """``a.b.c`` for a chain of names and attributes, else None."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = dotted_name(node.value)
        return None if inner is None else f"{inner}.{node.attr}"
    return None


def project_module(name: str, modules: dict[str, Path]) -> str | None:
    """The longest prefix of dotted ``name`` that is a project module, or None."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    return None


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's components of more than one module, or of one module importing itself."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:  # recursion depth is bounded by the number of modules
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph[node]:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def shortest_path(graph: dict[str, set[str]], start: str, goal: str, allowed: set[str]) -> list[str]:
    """Breadth-first path start -> goal inside ``allowed`` (exists within a strongly connected set)."""
    previous: dict[str, str | None] = {start: None}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        if node == goal:
            break
        for nxt in sorted(graph[node] & allowed):
            if nxt not in previous:
                previous[nxt] = node
                queue.append(nxt)
    path = [goal]
    while previous[path[-1]] is not None:
        path.append(previous[path[-1]])
    return path[::-1]


def covering_cycles(graph: dict[str, set[str]], component: list[str]) -> list[list[str]]:
    """Cycles (closed: first == last) through ``component`` that together use every edge in it."""
    members = set(component)
    covered: set[tuple[str, str]] = set()
    cycles = []
    for source in component:
        for target in sorted(graph[source] & members):
            if (source, target) in covered:
                continue
            cycle = [source] + (shortest_path(graph, target, source, members) if target != source else [source])
            covered.update(zip(cycle, cycle[1:], strict=False))
            cycles.append(cycle)
    return cycles


def check(root: Path, packages: tuple[str, ...] = DEFAULT_PACKAGES) -> Findings:
    """Every finding for the modules under ``root/<package>`` for each package."""
    modules = find_modules(root, packages)
    findings = Findings(modules=len(modules))
    edges: dict[tuple[str, str], list[Edge]] = {}
    for module, path in sorted(modules.items()):
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        except (SyntaxError, UnicodeDecodeError) as error:
            findings.parse_errors.append({"module": module, "error": str(error)})
            continue
        collector = ImportCollector(module, path.name == "__init__.py", modules)
        collector.visit(tree)
        forbidden = FORBIDDEN.get(module.split(".")[0], ())
        for target, name, line, lazy, typing in collector.imports:
            if target.split(".")[0] in forbidden:
                findings.layer_violations.append({"module": module, "line": line, "imports": target})
            resolved = project_module(target, modules)
            if resolved is None:
                continue
            if name is not None and is_private(name) and resolved != module:
                findings.private_names.append(
                    {"module": module, "line": line, "from": resolved, "name": name, "kind": "import"})
            if resolved != module and not typing:
                edges.setdefault((module, resolved), []).append(Edge(module, resolved, line, lazy))
        for target, attr, line in collector.attributes:
            findings.private_names.append(
                {"module": module, "line": line, "from": target, "name": attr, "kind": "attribute"})
    graph: dict[str, set[str]] = {module: set() for module in modules}
    for source, target in edges:
        graph[source].add(target)
    for component in strongly_connected(graph):
        cycles = []
        for cycle in covering_cycles(graph, component):
            cycles.append([
                {"from": a, "to": b, "lines": sorted({e.line for e in edges[a, b]}),
                 "lazy": all(e.lazy for e in edges[a, b])}
                for a, b in zip(cycle, cycle[1:], strict=False)])
        findings.cycles.append({"modules": component, "cycles": cycles})
    return findings


def format_cycle(steps: list[dict]) -> str:
    text = steps[0]["from"]
    for step in steps:
        lines = ",".join(map(str, step["lines"]))
        text += f" -[{'lazy ' if step['lazy'] else ''}line {lines}]-> {step['to']}"
    return text


def report(findings: Findings) -> str:
    """Human-readable text of ``findings``."""
    out = [f"{findings.modules} modules checked"]
    for error in findings.parse_errors:
        out.append(f"cannot parse {error['module']}: {error['error']}")
    for group in findings.cycles:
        out.append(f"import cycle among {len(group['modules'])} modules: {', '.join(group['modules'])}")
        out.extend(f"    {format_cycle(steps)}" for steps in group["cycles"])
    for v in findings.layer_violations:
        out.append(f"layer violation: {v['module']} (line {v['line']}) imports {v['imports']}")
    for p in findings.private_names:
        how = f"imports {p['name']} from" if p["kind"] == "import" else f"uses {p['from']}.{p['name']} of"
        out.append(f"private name: {p['module']} (line {p['line']}) {how} {p['from']}")
    if findings.clean:
        out.append("no import cycles, layer violations or private names across modules")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("packages", nargs="*", default=list(DEFAULT_PACKAGES),
                        help="top-level packages under --root (default: fusion dashboard)")
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent,
                        help="directory holding the packages (default: this repository)")
    parser.add_argument("--json", action="store_true", help="print the findings as one JSON object")
    args = parser.parse_args(argv)
    missing = [p for p in args.packages if not (args.root / p).exists()]
    if missing:
        parser.error(f"no package {', '.join(missing)} under {args.root}")
    findings = check(args.root, tuple(args.packages))
    if args.json:
        print(json.dumps({**asdict(findings), "clean": findings.clean}, indent=2))
    else:
        print(report(findings))
    if findings.parse_errors:
        return 2
    return 0 if findings.clean else 1


if __name__ == "__main__":
    sys.exit(main())
