"""The layout keeps its promises (ARCHITECTURE.md): one direction of imports, no cycles, one table of
input sizes, small modules, and no block of code written twice."""

from __future__ import annotations

import ast
import io
import json
import re
import subprocess
import sys
import tokenize
from collections import defaultdict
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parent.parent / "ibsearch"

# Modules every layer may use: the vocabulary and the small tools below all of them.
BASE = {"errors", "modality", "files", "idsets", "devices", "progress", "lazy", "closing"}
LAYERS = ("encoder", "index", "store")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def imports_of(name: str) -> set[str]:
    """Every ibsearch module ``name`` imports, at the top, inside functions or for type checking."""
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
    package = name if is_package(name) else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                # `from . import library` imports the submodule; `from .x import y` the module x.
                found.add(f"{target}.{alias.name}" if f"{target}.{alias.name}" in MODULES else target)
    return {m for m in found if m in MODULES and m != name}


GRAPH = {name: imports_of(name) for name in MODULES}


def unresolved_relative_imports(name: str) -> list[str]:
    """Relative imports in ``name`` that name no module of the package (a lazy one would only fail
    when it runs)."""
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
    package = name if is_package(name) else name.rpartition(".")[0]
    broken = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
            target = ".".join(base + ([node.module] if node.module else []))
            if target not in MODULES:
                broken.append(f"{name}:{node.lineno} from {'.' * node.level}{node.module or ''}")
    return broken


def test_every_relative_import_names_a_module_of_the_package():
    assert [b for name in MODULES for b in unresolved_relative_imports(name)] == []


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_package_has_no_import_cycle_lazy_imports_included():
    assert len(MODULES) > 40
    assert cycles(GRAPH) == []
    # The checker itself finds a cycle when there is one.
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [["a", "b", "c"]]


@pytest.mark.parametrize("layer", LAYERS)
def test_encoder_index_and_store_import_only_themselves_and_the_base(layer):
    for name, deps in GRAPH.items():
        if name.split(".")[1:2] != [layer]:
            continue
        for dep in deps:
            parts = dep.split(".")
            assert parts[1] == layer or parts[1] in BASE or dep == "ibsearch", f"{name} imports {dep}"


def test_the_base_modules_import_no_layer_and_no_command():
    for name in BASE:
        for dep in GRAPH[f"ibsearch.{name}"]:
            assert dep.split(".")[1] in BASE, f"ibsearch.{name} imports {dep}"


def test_ingest_never_imports_torch_and_loads_without_it():
    for name, path in MODULES.items():
        if name.startswith("ibsearch.ingest"):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    assert not any(a.name.split(".")[0] == "torch" for a in node.names), name
                if isinstance(node, ast.ImportFrom):
                    assert (node.module or "").split(".")[0] != "torch", name
    # Walking and comparing with the database (a no-op re-ingest) must not pay for torch.
    code = "import sys, ibsearch.ingest, ibsearch.cli; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", "import json; " + code], capture_output=True, text=True, check=True
    ).stdout
    loaded = set(json.loads(out))
    assert "torch" not in loaded and "av" not in loaded and "PIL" not in loaded


INPUT_SIZES = {"77", "224", "2000", "204", "49408"}


def test_the_tower_input_sizes_are_written_down_once():
    places = defaultdict(list)
    for path in MODULES.values():
        source = path.read_text(encoding="utf-8")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Constant) and type(node.value) is int:
                literal = ast.get_source_segment(source, node)
                if literal in INPUT_SIZES:
                    places[literal].append(str(path.relative_to(PACKAGE)))
    assert dict(places) == {size: ["encoder/inputs.py"] for size in INPUT_SIZES}


def test_modules_stay_under_400_lines_and_functions_under_80():
    too_long = []
    for name, path in MODULES.items():
        source = path.read_text(encoding="utf-8")
        if len(source.splitlines()) > 400:
            too_long.append(f"{name}: {len(source.splitlines())} lines")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > 80:
                    too_long.append(f"{name}.{node.name}: {length} lines")
    assert too_long == []


# The console script's entry point (pyproject's [project.scripts]) is the one function a package defines.
INIT_DEFINES = {"ibsearch.cli": {"main"}}


def test_a_package_init_holds_re_exports_not_implementations():
    defined = []
    for name, path in MODULES.items():
        if path.name != "__init__.py":
            continue
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                if node.name not in INIT_DEFINES.get(name, set()):
                    defined.append(f"{name}.{node.name}")
    assert defined == [], "move these into a named module and re-export them from the package"


# Names two modules may share: each package's application object and its settings (always read with
# the package's name: `cli.app`, `server.config`).
SHARED_NAMES = {"app", "config"}


def test_no_two_modules_share_a_name():
    where = defaultdict(list)
    for name, path in MODULES.items():
        if path.name != "__init__.py":
            where[name.rpartition(".")[2]].append(name)
    shared = {short: names for short, names in where.items() if len(names) > 1 and short not in SHARED_NAMES}
    assert shared == {}


# ------------------------------------------------------------------------------------ repeated code

WINDOW = 6
_SKIP = re.compile(r"^(import |from \S+ import |[\])}]+[,:]?$|\"\"\"$|#)")


def shape_lines(path: Path) -> list[tuple[int, str]]:
    """``(line number, shape)`` of each line that counts: names, strings and numbers replaced by
    placeholders, keywords and punctuation kept; blank, comment, import, docstring-quote and
    lone-bracket lines left out."""
    source = path.read_text(encoding="utf-8")
    shapes: dict[int, list[str]] = defaultdict(list)
    keywords = set(__import__("keyword").kwlist)
    prose: set[int] = set()  # rows of docstrings: documentation, not code
    starts_statement = True
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.STRING and starts_statement:
            prose.update(range(tok.start[0], tok.end[0] + 1))
        starts_statement = tok.type in (tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.NL)
        if tok.type in (tokenize.COMMENT,):
            starts_statement = True
        if tok.type == tokenize.NAME:
            shapes[tok.start[0]].append(tok.string if tok.string in keywords else "N")
        elif tok.type == tokenize.STRING:
            for row in range(tok.start[0], tok.end[0] + 1):
                shapes[row].append("S")
        elif tok.type == tokenize.NUMBER:
            shapes[tok.start[0]].append("0")
        elif tok.type == tokenize.OP:
            shapes[tok.start[0]].append(tok.string)
    lines = source.splitlines()
    kept = []
    for number, text in enumerate(lines, 1):
        stripped = text.strip()
        if not stripped or number in prose or _SKIP.match(stripped) or not shapes.get(number):
            continue
        kept.append((number, " ".join(shapes[number])))
    return kept


def repeated_blocks(paths: list[Path]) -> list[str]:
    """Places where WINDOW consecutive counted lines have the same shape as somewhere else."""
    where: dict[tuple[str, ...], list[tuple[Path, int]]] = defaultdict(list)
    for path in paths:
        kept = shape_lines(path)
        for i in range(len(kept) - WINDOW + 1):
            window = tuple(shape for _, shape in kept[i : i + WINDOW])
            if sum(len(s) for s in window) < 12 * WINDOW:
                continue  # thin lines (``return x``, ``pass``...) repeat by nature
            where[window].append((path, kept[i][0]))
    found = []
    for places in where.values():
        distinct = []
        for path, line in places:
            if all(path != p or abs(line - q) >= WINDOW for p, q in distinct):
                distinct.append((path, line))
        if len(distinct) > 1:
            found.append(" ~ ".join(f"{p}:{q}" for p, q in distinct))
    return found


def test_the_repeated_block_finder_finds_a_copy(tmp_path):
    block = "\n".join(f"value_{i} = compute(alpha, beta, gamma, {i}) + other(delta)" for i in range(7))
    (tmp_path / "a.py").write_text(block + "\n")
    (tmp_path / "b.py").write_text("x = 1\n" + block.replace("alpha", "zeta") + "\n")
    assert repeated_blocks([tmp_path / "a.py", tmp_path / "b.py"])


def test_no_block_of_six_lines_is_written_twice_in_the_package():
    assert repeated_blocks(list(MODULES.values())) == []


def test_architecture_md_names_every_module_and_only_modules_that_exist():
    text = (PACKAGE.parent / "ARCHITECTURE.md").read_text(encoding="utf-8")
    named = set(re.findall(r"`([a-z_/]+(?:\.py)?)`", text))
    for name in MODULES:
        parts = name.split(".")[1:]
        if not parts or parts[-1].startswith("__"):
            continue
        # Each module is named: by its file, its folder, or in a qualified name (`media.registry`).
        assert re.search(rf"(?<![\w]){re.escape(parts[-1])}(?![\w])", text), f"{name} is not described"
    for word in named:
        if word.endswith(".py") or word.endswith("/"):
            candidates = [
                PACKAGE.parent / word,
                PACKAGE / word,
                *PACKAGE.glob(f"*/{word}"),
                *PACKAGE.glob(f"*/*/{word}"),
            ]
            assert any(c.exists() for c in candidates), f"ARCHITECTURE.md names {word}, which does not exist"
    assert "ARCHITECTURE.md" in (PACKAGE.parent / "README.md").read_text(encoding="utf-8")
