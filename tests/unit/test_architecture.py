"""The layout's rules, checked with ast on the source: packages import only the layers below them (the order
ARCHITECTURE.md declares; function-local imports count), no import cycles among vischoose's modules, no import of
another module's private names, no runtime name written outside runtimes/ and the CLI, functions under 40 lines and
CLI commands under 20. The checker is also run on a small package with each fault planted, so it can fail."""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "vischoose"
ARCHITECTURE = PACKAGE.parent / "ARCHITECTURE.md"
RUNTIME_WORDS = {"onnxruntime", "executorch", "openvino", "litert", "tensorrt", "coreml", "tflite"}
MAX_FUNCTION_LINES, MAX_COMMAND_LINES = 40, 20


@dataclass
class Findings:
    cycles: list[list[str]] = field(default_factory=list)
    private_imports: list[str] = field(default_factory=list)
    runtime_literals: list[str] = field(default_factory=list)
    long_functions: list[str] = field(default_factory=list)
    upward_imports: list[str] = field(default_factory=list)


def declared_layers(text: str) -> list[str]:
    """The layers, bottom first, from the ```layers block of ARCHITECTURE.md: one package (or top-level module) per
    line, `name  what it holds`."""
    block = text.split("```layers\n", 1)[1].split("```", 1)[0]
    return [line.split()[0] for line in block.splitlines() if line.strip()]


def layer_of(module: str) -> str:
    """The layer a module belongs to: its top-level package or module under the root package (the root itself:
    the public API, above everything)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] != "__main__" else parts[0]


def modules(package: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file under the package."""
    found = {}
    for path in package.rglob("*.py"):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def type_checking_nodes(tree: ast.AST) -> set[int]:
    """Nodes under `if TYPE_CHECKING:` (imports there never run)."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for n in ast.walk(node))
    return skip


def imported(node: ast.Import | ast.ImportFrom, here: str, is_package: bool, known: dict[str, Path]
             ) -> list[tuple[str, str | None]]:
    """(module imported, name taken from it or None) for one import statement."""
    if isinstance(node, ast.Import):
        return [(alias.name, None) for alias in node.names]
    base = node.module or ""
    if node.level:
        parts = here.split(".") if is_package else here.split(".")[:-1]
        parts = parts[:len(parts) - node.level + 1]
        base = ".".join(parts + ([node.module] if node.module else []))
    out = []
    for alias in node.names:
        sub = f"{base}.{alias.name}"
        out.append((sub, None) if sub in known else (base, alias.name))
    return out


def owner(name: str, known: dict[str, Path]) -> str | None:
    """The module of ours a dotted name lives in (a.b.c -> a.b when a.b.c is not a module)."""
    while name and name not in known:
        if "." not in name:
            return None
        name = name.rsplit(".", 1)[0]
    return name or None


def check(package: Path, layers: list[str] | None = None) -> Findings:
    """Every rule's offenders in a package; with layers (bottom first), every import of a higher layer too."""
    known, findings = modules(package), Findings()
    rank = {name: i for i, name in enumerate(layers or [])}
    edges: dict[str, set[str]] = {m: set() for m in known}
    for name, path in known.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        skip, rel = type_checking_nodes(tree), path.relative_to(package.parent)
        in_runtimes, is_cli = ".runtimes" in f".{name}", ".cli" in f".{name}"
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for target, taken in imported(node, name, path.name == "__init__.py", known):
                    mod = owner(target, known)
                    if mod and mod != name:
                        edges[name].add(mod)
                        _layered(name, mod, rank, f"{rel}:{node.lineno}", findings)
                        if taken and taken.startswith("_") and not taken.startswith("__"):
                            findings.private_imports.append(f"{rel}:{node.lineno} imports {taken} from {mod}")
            elif isinstance(node, ast.Constant) and node.value in RUNTIME_WORDS and not (in_runtimes or is_cli):
                findings.runtime_literals.append(f"{rel}:{node.lineno} {node.value!r}")
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                _length(node, rel, findings)
    findings.cycles = cycles(edges)
    return findings


def _layered(module: str, target: str, rank: dict[str, int], where: str, findings: Findings) -> None:
    """An import is upward when the imported module's layer is above the importer's (the root package, the public
    API, is above every layer; a layer missing from the list is an error of the list)."""
    if not rank:
        return
    top = len(rank)
    here, there = layer_of(module), layer_of(target)
    root = module.split(".")[0]
    mine, theirs = (rank.get(name, top if name == root else -1) for name in (here, there))
    if mine < 0 or theirs < 0:
        findings.upward_imports.append(f"{where} {module} or {target}: layer not declared")
    elif theirs > mine:
        findings.upward_imports.append(f"{where} {module} ({here}) imports {target} ({there})")


def _length(fn: ast.FunctionDef | ast.AsyncFunctionDef, rel: Path, findings: Findings) -> None:
    body = fn.body[1:] if isinstance(fn.body[0], ast.Expr) and isinstance(fn.body[0].value, ast.Constant) else fn.body
    if not body:
        return
    lines = (body[-1].end_lineno or body[-1].lineno) - body[0].lineno + 1
    is_command = any("command" in ast.unparse(d) for d in fn.decorator_list)
    limit = MAX_COMMAND_LINES if is_command else MAX_FUNCTION_LINES
    if lines > limit:
        findings.long_functions.append(f"{rel}:{fn.lineno} {fn.name} {lines} lines (limit {limit})")


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in edges:
        if v not in index:
            visit(v)
    return found


def test_packages_import_only_the_layers_below_them():
    assert check(PACKAGE, declared_layers(ARCHITECTURE.read_text())).upward_imports == []


def test_every_package_is_a_declared_layer():
    layers = declared_layers(ARCHITECTURE.read_text())
    assert len(layers) == len(set(layers))
    assert {layer_of(m) for m in modules(PACKAGE)} - {"vischoose"} == set(layers)


def test_vischoose_has_no_import_cycles():
    assert check(PACKAGE).cycles == []


def test_no_module_imports_another_modules_private_names():
    assert check(PACKAGE).private_imports == []


def test_runtime_names_are_written_only_in_runtimes_and_the_cli():
    assert check(PACKAGE).runtime_literals == []


def test_functions_and_cli_commands_stay_short():
    assert check(PACKAGE).long_functions == []


def test_the_checker_finds_each_planted_fault(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "runtimes").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "runtimes" / "__init__.py").write_text("")
    (pkg / "runtimes" / "ort.py").write_text("NAME = 'onnxruntime'\n")  # allowed here
    (pkg / "a.py").write_text("from pkg import b\nfrom pkg.b import _hidden\nRUNTIME = 'openvino'\n")
    (pkg / "b.py").write_text("def f():\n    from pkg import a\n    return a\n_hidden = 1\n")
    body = "\n".join(f"    x{i} = {i}" for i in range(41))
    (pkg / "c.py").write_text(f"def long():\n    \"\"\"Doc.\"\"\"\n{body}\n\n"
                              f"@app.command()\ndef cmd():\n" + "\n".join(f"    y{i} = {i}" for i in range(21)) + "\n")
    found = check(pkg)
    assert found.cycles == [["pkg.a", "pkg.b"]]
    assert found.private_imports == ["pkg/a.py:2 imports _hidden from pkg.b"]
    assert found.runtime_literals == ["pkg/a.py:3 'openvino'"]
    assert [f.split()[1] for f in found.long_functions] == ["long", "cmd"]


def test_the_checker_finds_a_planted_upward_import(tmp_path):
    pkg = tmp_path / "pkg"
    for sub in ("low", "high"):
        (pkg / sub).mkdir(parents=True)
        (pkg / sub / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("from pkg.high import mod\n")  # the root (API) may import any layer
    (pkg / "high" / "mod.py").write_text("from pkg.low import base\n")  # downward: fine
    (pkg / "low" / "base.py").write_text("def f():\n    from pkg.high import mod  # function-local, still upward\n")
    found = check(pkg, ["low", "high"])
    assert found.upward_imports == ["pkg/low/base.py:2 pkg.low.base (low) imports pkg.high.mod (high)"]
    assert check(pkg, ["high", "low"]).upward_imports == ["pkg/high/mod.py:1 pkg.high.mod (high) imports pkg.low.base (low)"]
