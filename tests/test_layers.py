"""The package's shape: layers that import one way, no borrowed private names, small modules, one import style.

The layers, lowest first: ``core`` <- ``cluster`` <- ``ps`` <- ``variants`` <- ``analysis`` <- ``teaching``
(ARCHITECTURE.md). A module may import from its own layer and the layers before it, never from a later one.
"""

import ast
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "dml_lesson"
LAYERS = ["_dask", "core", "cluster", "ps", "variants", "analysis", "teaching"]
MODULES = sorted(p for p in PACKAGE.rglob("*.py"))
MAX_LINES = 420


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(dotted: str) -> int | None:
    """Index of the layer a ``dml_lesson.<layer>...`` module belongs to (None: the package's own __init__)."""
    parts = dotted.split(".")
    if parts[0] != "dml_lesson" or len(parts) == 1:
        return None
    return LAYERS.index(parts[1])


def imports(path: Path, source: str | None = None) -> list[tuple[int, str, list[str]]]:
    """(line, absolute module imported, names imported from it) for every import of the package in ``path``."""
    tree = ast.parse(path.read_text() if source is None else source)
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rsplit(".", 1)[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("dml_lesson"):
                found.append((node.lineno, target, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name, []) for a in node.names if a.name.startswith("dml_lesson")]
    return found


def test_every_module_is_in_a_layer():
    for path in MODULES:
        name = module_name(path)
        if name != "dml_lesson":
            assert name.split(".")[1] in LAYERS, f"{path.relative_to(ROOT)} is in no layer of {LAYERS}"


def violations(path: Path, source: str | None = None) -> list[str]:
    """What is wrong with the imports of ``path``: imports from a later layer, private names of other modules."""
    own, found = layer_of(module_name(path)), []
    for line, target, names in imports(path, source):
        targets = [target] if layer_of(target) is not None else [f"{target}.{n}" for n in names]
        for t in targets:
            if layer_of(t) is None:
                found.append(f"{path.name}:{line} imports the top-level package ({t})")
            elif layer_of(t) > own:
                found.append(f"{path.relative_to(ROOT)}:{line} imports {t}, a later layer ({LAYERS[layer_of(t)]} "
                             f"after {LAYERS[own]}): move the shared code down a layer")
        private = [n for n in names if n.startswith("_")]
        if private:
            found.append(f"{path.relative_to(ROOT)}:{line} imports {private} from {target}: give it a public name")
    return found


@pytest.mark.parametrize("path", [p for p in MODULES if p != PACKAGE / "__init__.py"],
                         ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down_the_layers_and_borrow_no_private_names(path):
    assert violations(path) == []


def test_the_layering_check_catches_an_upward_import_and_a_private_name():
    fake = PACKAGE / "core" / "models.py"
    src = "from ..teaching.plots import new_figure\nfrom .checks import _private\nfrom . import result\n"
    found = violations(fake, src)
    assert len(found) == 2
    assert "dml_lesson.teaching.plots" in found[0] and "later layer (teaching after core)" in found[0]
    assert "['_private']" in found[1]
    assert violations(PACKAGE / "teaching" / "experiments.py", "from ..core.models import LINEAR\n") == []


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_modules_stay_small(path):
    n = len(path.read_text().splitlines())
    assert n <= MAX_LINES, f"{path.relative_to(ROOT)} has {n} lines: split it by idea (the course keeps ~400)"


def test_the_package_exports_the_contract_and_the_layers():
    import dml_lesson as dml

    contract = {"make_regression", "gradient_descent", "sgd", "get_client", "distributed_gd", "distributed_sgd",
                "TrainingResult", "close_client"}
    assert contract <= set(dml.__all__)
    assert {"core", "cluster", "ps", "variants", "analysis", "teaching"} <= set(dml.__all__)
    assert len(dml.__all__) <= 40, "the top level is the course's contract; the rest lives in the layers"
    for name in dml.__all__:
        assert hasattr(dml, name), name


NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebooks_import_the_package_in_one_style(path):
    """``import dml_lesson as dml`` for the contract, ``from dml_lesson.<layer> import <module>, ...`` for the rest:
    never a function or class straight out of a module, never a module path that skips its layer."""
    for cell in json.loads(path.read_text())["cells"]:
        if cell["cell_type"] != "code":
            continue
        tree = ast.parse("".join(line for line in "".join(cell["source"]).splitlines(keepends=True)
                                 if not line.lstrip().startswith(("%", "!"))))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.startswith("dml_lesson"):
                        assert a.name == "dml_lesson" and a.asname == "dml", f"{path.name}: import {a.name}"
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("dml_lesson"):
                assert node.module.count(".") == 1 and node.module.split(".")[1] in LAYERS[1:], (
                    f"{path.name}: from {node.module} import ... (import modules of a layer: "
                    "from dml_lesson.<layer> import <module>)")
                layer_dir = PACKAGE / node.module.split(".")[1]
                for a in node.names:
                    assert (layer_dir / f"{a.name}.py").exists() or (layer_dir / a.name).is_dir(), (
                        f"{path.name}: from {node.module} import {a.name} is not a module")


def test_architecture_md_lists_every_module():
    text = (ROOT / "ARCHITECTURE.md").read_text()
    for path in MODULES:
        if path.name == "__init__.py":
            continue
        rel = path.relative_to(PACKAGE)
        if len(rel.parts) == 3:  # teaching/plots/base.py: named in its folder's row
            assert f"`{rel.parts[1]}/`" in text and f"`{path.stem}`" in text, f"ARCHITECTURE.md misses {rel}"
        else:
            assert f"`{path.name}`" in text, f"ARCHITECTURE.md misses {rel}"
