"""The package's layout: few modules at the top, subpackages by concern, imports pointing down the layers that
``modeling/__init__.py`` documents, and no cycle between subpackages."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import modeling

PACKAGE = Path(modeling.__file__).resolve().parent
TOP = ""  # the layer name of modules directly in modeling/ (labels.py, cli.py)


def module_name(path: Path) -> tuple[str, ...]:
    """``modeling/inference/predictor.py`` -> ``("modeling", "inference", "predictor")``; a package is its folder."""
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return parts[:-1] if parts[-1] == "__init__" else parts


def imported_modules(path: Path, source: str) -> set[tuple[str, ...]]:
    """Every ``modeling.*`` module that ``source`` (the text of ``path``) imports, absolute or relative, at the top
    or inside a function. ``from modeling.x import y`` counts as importing ``modeling.x`` and ``modeling.x.y``
    (``y`` may be a module)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name[:-1]
    found = set()
    for node in ast.walk(ast.parse(source, filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {tuple(alias.name.split(".")) for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                target = base + tuple(node.module.split(".") if node.module else ())
            else:
                target = tuple((node.module or "").split("."))
            found.add(target)
            found |= {target + (alias.name,) for alias in node.names}
    return {m for m in found if m[0] == "modeling"}


def group_of(name: tuple[str, ...]) -> str:
    """The subpackage a module belongs to, or ``TOP`` for ``modeling`` itself and the modules directly in it."""
    return name[1] if len(name) > 1 and (PACKAGE / name[1]).is_dir() else TOP


def layer_index() -> dict[str, int]:
    return {group: i for i, layer in enumerate(modeling._LAYERS) for group in layer}


def group_imports(sources: dict[Path, str]) -> dict[str, dict[str, list[str]]]:
    """group -> imported group -> where (``file -> modeling.x.y``), for imports between different groups only."""
    edges: dict[str, dict[str, list[str]]] = {}
    for path, source in sources.items():
        group = group_of(module_name(path))
        for target in imported_modules(path, source):
            if group_of(target) != group:
                where = f"{path.relative_to(PACKAGE.parent)} -> {'.'.join(target)}"
                edges.setdefault(group, {}).setdefault(group_of(target), []).append(where)
    return edges


def upward_imports(edges: dict[str, dict[str, list[str]]]) -> list[str]:
    """Imports of a group on the same or a higher layer than the importer's (sideways counts: peers stay apart)."""
    layers = layer_index()
    return sorted(
        where
        for source, targets in edges.items()
        for target, wheres in targets.items()
        if layers[target] >= layers[source]
        for where in wheres
    )


def find_cycle(edges: dict[str, dict[str, list[str]]]) -> list[str] | None:
    """A cycle of groups, as the list of groups along it, or None (depth-first search)."""
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(group: str) -> list[str] | None:
        state[group] = "open"
        stack.append(group)
        for target in edges.get(group, {}):
            if state.get(target) == "open":
                return stack[stack.index(target) :] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        stack.pop()
        state[group] = "done"
        return None

    for group in sorted(edges):
        if group not in state and (cycle := visit(group)):
            return cycle
    return None


SOURCES = {path: path.read_text() for path in sorted(PACKAGE.rglob("*.py"))}


def test_the_top_of_the_package_holds_at_most_six_modules_and_at_least_four_subpackages():
    top_modules = sorted(p.name for p in PACKAGE.glob("*.py"))
    subpackages = sorted(p.parent.name for p in PACKAGE.glob("*/__init__.py"))
    assert len(top_modules) <= 6, top_modules
    assert len(subpackages) >= 4, subpackages


def test_every_subpackage_sits_on_exactly_one_layer_and_the_docstring_shows_the_same_layers():
    subpackages = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    listed = [group for layer in modeling._LAYERS for group in layer]
    assert sorted(listed) == sorted(subpackages | {TOP})
    doc_lines = [line.split(maxsplit=1) for line in modeling.__doc__.splitlines() if line.strip()[:1].isdigit()]
    shown = [(int(i), rest.split(" (")[0]) for i, rest in doc_lines]
    assert shown == [(i, ", ".join(g for g in layer if g) or "modeling") for i, layer in enumerate(modeling._LAYERS)]


def test_every_import_of_the_package_resolves_to_a_module_or_package_that_exists():
    for path, source in SOURCES.items():
        for target in imported_modules(path, source):
            for candidate in (target, target[:-1]):  # `from .x import name`: x.name may be a function in x
                here = PACKAGE.parent.joinpath(*candidate)
                if here.with_suffix(".py").is_file() or (here / "__init__.py").is_file():
                    break
            else:
                pytest.fail(f"{path}: {'.'.join(target)} resolves to nothing")


def test_no_module_imports_from_its_own_layer_or_above():
    assert upward_imports(group_imports(SOURCES)) == []


def test_the_subpackages_import_each_other_without_a_cycle():
    assert find_cycle(group_imports(SOURCES)) is None


@pytest.mark.parametrize(
    "module, line, cycle",
    [
        ("models/sizes.py", "from ..training.trainer import FERTrainer", True),  # up, and training imports models
        ("models/sizes.py", "import modeling.hub.push", False),  # up, absolute
        ("data/load.py", "from ..models.sizes import vit_config", False),  # sideways on layer 1
        ("labels.py", "from .inference.faces import to_rgb", True),  # from the top into a subpackage
        ("evaluation/plots.py", "    from modeling.inference import faces", True),  # inside a function
    ],
    ids=["relative_up", "absolute_up", "sideways", "top_down_into_a_subpackage", "in_a_function"],
)
def test_the_checks_catch_an_import_added_against_the_layers(module, line, cycle):
    path = PACKAGE / module
    sources = dict(SOURCES)
    sources[path] += ("def _late():\n" if line.startswith(" ") else "") + line + "\n"
    assert any(where.startswith(f"modeling/{module} -> ") for where in upward_imports(group_imports(sources)))
    assert (find_cycle(group_imports(sources)) is not None) == cycle
