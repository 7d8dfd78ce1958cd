"""The shape issue 25 gave gptlib, kept: public torch only, short functions, no import cycles, lean modules,
and docs/layout.md naming every module.

Run: pytest tests/test_package_shape.py
"""

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "gptlib"
LAYOUT = PACKAGE.parent / "docs" / "layout.md"
SOURCES = sorted(PACKAGE.rglob("*.py"))

# the 30 modules gptlib had when issue 25 was filed, and their budget together (wc -l) from 5,801 then
ORIGINAL = {
    "__init__", "__main__", "attention", "attention_maps", "batches", "bench", "bigram", "bpe", "checkpoint",
    "cli", "config", "data", "device", "distributed", "errors", "export", "fast", "files", "init", "kvcache",
    "ladder", "model", "plotting", "presets", "run", "sampling", "speed", "tokenizer", "training", "widgets",
}
ORIGINAL_BUDGET = 4200
# modules added since (counted on their own; the rules on functions, torch and imports hold for them too)
ADDED = {"pace", "lora", "finetune"}
MAX_LINES, MAX_PARAMETERS = 60, 8

# torch's private API: `torch._x`, `torch.cpu._x`... (a dunder such as `torch.__version__` is public),
# and the private names gptlib once used
PRIVATE = re.compile(r"\btorch(\.\w+)*\._(?!_\w*__\b)\w|_step_supports_amp_scaling|_softmax_backward_data"
                     r"|_is_avx512_bf16_supported")


def _name(path: Path) -> str:
    return ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")


def test_no_name_of_torchs_private_api():
    found = [f"{path.relative_to(PACKAGE.parent)}:{i}: {line.strip()}" for path in SOURCES
             for i, line in enumerate(path.read_text().splitlines(), 1) if PRIVATE.search(line)]
    assert not found, "private torch API (the next release may change it):\n" + "\n".join(found)


def _functions(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            a = node.args
            params = [*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg]
            params = [p for p in params if p is not None]
            if params and params[0].arg in ("self", "cls"):
                params = params[1:]
            yield f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name}", \
                node.end_lineno - node.lineno + 1, len(params)


def test_no_function_is_longer_than_60_lines_or_takes_more_than_8_parameters():
    functions = [f for path in SOURCES for f in _functions(path)]
    assert functions
    long = [f"{where}: {lines} lines" for where, lines, _ in functions if lines > MAX_LINES]
    many = [f"{where}: {n} parameters" for where, _, n in functions if n > MAX_PARAMETERS]
    assert not long + many, "\n".join(long + many)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The gptlib modules that ``path`` imports, at module level or inside a function."""
    package = _name(path) if path.name == "__init__.py" else _name(path).rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # a relative import
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            for alias in node.names:  # `from gptlib import bench` imports the module gptlib.bench
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
    return found & modules


def test_the_imports_between_gptlib_modules_have_no_cycle():
    modules = {_name(p): p for p in SOURCES}
    graph = {name: _imports(path, set(modules)) - {name} for name, path in modules.items()}
    assert "gptlib.bench" in graph["gptlib.cli"]  # `from gptlib import bench`: the module, not the package
    assert "gptlib.presets" in graph["gptlib.plotting"]  # an import inside a function counts
    state, cycles = {}, []

    def visit(node: str, trail: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(" -> ".join(trail[trail.index(nxt):] + [node, nxt]))
            elif nxt not in state:
                visit(nxt, trail + [node])
        state[node] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_the_original_modules_keep_to_their_line_budget():
    top = {p.stem for p in PACKAGE.glob("*.py")}
    unknown = top - ORIGINAL - ADDED
    assert not unknown, f"name each new module in ORIGINAL or ADDED: {sorted(unknown)}"
    lines = {name: (PACKAGE / f"{name}.py").read_text().count("\n") for name in ORIGINAL & top}
    total = sum(lines.values())
    biggest = ", ".join(f"{n}.py {c}" for n, c in sorted(lines.items(), key=lambda x: -x[1])[:5])
    assert total <= ORIGINAL_BUDGET, f"the original modules total {total} lines (> {ORIGINAL_BUDGET}): {biggest}"


def test_docs_layout_names_every_module_and_no_other():
    text = LAYOUT.read_text()
    block = text[text.index("\ngptlib/ "):text.index("\ndata/ ")]  # the package's part of the tree
    named = set(re.findall(r"\b(\w+)\.py\b", block))
    modules = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__", "__main__"}
    assert named == modules, f"not in docs/layout.md: {sorted(modules - named)}; gone: {sorted(named - modules)}"
    subpackages = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    assert all(f"{name}/" in block for name in subpackages)


@pytest.mark.parametrize("line, private", [
    ("y = torch._softmax_backward_data(g, y, -1, x.dtype)", True),
    ("if torch.cpu._is_avx512_bf16_supported():", True),
    ("optimizer._step_supports_amp_scaling = True", True),
    ("torch.nn.functional._canonical_mask(m)", True),
    ('info = {"torch": torch.__version__}', False),
    ("torch.cuda.synchronize(device)", False),
])
def test_the_private_api_pattern(line, private):
    assert bool(PRIVATE.search(line)) is private
