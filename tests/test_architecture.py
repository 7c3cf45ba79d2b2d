"""The package's shape: every module lives in a room, a room imports only from rooms
on lower floors (or from itself), and no modules import each other in a circle.
Function-level (lazy) imports count too: a lazy upward import is still an upward
import. docs/architecture.md describes the rooms."""

import ast
from pathlib import Path
from typing import Dict, List, Set

PACKAGE = Path(__file__).resolve().parents[1] / "spacy_bertcat"

# Room -> floor. The package's top-level modules (__init__, __main__) may import anything.
FLOORS = {
    "about": 0,
    "errors": 0,
    "data": 1,
    "layers": 1,
    "decisions": 1,
    "components": 2,
    "training": 3,
    "serving": 3,
    "predict": 3,
    "explain": 3,
    "fewshot": 3,
    "distributed": 4,
    "evaluation": 4,  # its report has an explanation page (explain/, floor 3)
    "tune": 4,
    "cli": 5,
}
TOP = {"spacy_bertcat", "spacy_bertcat.__main__"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> Set[str]:
    """The spacy_bertcat modules a file imports, anywhere in it."""
    name = module_name(path)
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found: Set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "spacy_bertcat":
                continue
            for alias in node.names:  # `from . import x` imports a module
                sub = f"{target}.{alias.name}"
                found.add(
                    sub
                    if (PACKAGE.parent / sub.replace(".", "/")).with_suffix(".py").exists()
                    or (PACKAGE.parent / sub.replace(".", "/")).is_dir()
                    else target
                )
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "spacy_bertcat")
    return found - {name}


def graph() -> Dict[str, Set[str]]:
    return {module_name(p): imports_of(p) for p in PACKAGE.rglob("*.py")}


def room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_every_module_lives_in_a_room():
    homeless = sorted(m for m in graph() if m not in TOP and room(m) not in FLOORS)
    assert not homeless, f"modules outside the rooms of docs/architecture.md: {homeless}"


def test_no_import_from_a_lower_floor_to_a_higher_one():
    upward: List[str] = []
    for module, targets in graph().items():
        if module in TOP:
            continue
        for target in targets:
            if target in TOP or room(target) == room(module):
                continue
            if FLOORS[room(target)] >= FLOORS[room(module)]:
                upward.append(f"{module} -> {target}")
    assert not upward, "imports that go up or sideways between rooms:\n" + "\n".join(sorted(upward))


def test_no_import_circles():
    g = graph()
    edges = {m: {t for t in ts if t in g} for m, ts in g.items()}
    # Tarjan's strongly connected components.
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    circles: List[List[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
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
            # A package importing its own submodule is not a circle by itself.
            if len(component) > 1:
                circles.append(sorted(component))

    for v in edges:
        if v not in index:
            visit(v)
    assert not circles, f"import circles: {circles}"


def test_the_model_core_never_imports_its_consumers():
    consumers = {"training", "serving", "distributed", "cli", "evaluation", "predict", "components"}
    bad = sorted(f"{m} -> {t}" for m, ts in graph().items() if room(m) == "layers" for t in ts if room(t) in consumers)
    assert not bad, bad
