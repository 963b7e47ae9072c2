"""The notebooks as files: executed top to bottom, structured as the course promises, links in sync."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def cells(path):
    return json.loads(path.read_text())["cells"]


def source(cell):
    return "".join(cell["source"])


def test_the_core_course_is_there():
    names = [p.stem for p in NOTEBOOKS]
    for stem in ["00_why_distributed", "01_gradient_descent", "02_sgd_and_minibatch", "03_data_on_a_cluster",
                 "04_distributed_gd", "05_distributed_sgd"]:
        assert stem in names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_executed_in_order_without_errors(path):
    code = [c for c in cells(path) if c["cell_type"] == "code" and source(c).strip()]
    assert [c["execution_count"] for c in code] == list(range(1, len(code) + 1)), "re-execute in a fresh kernel"
    for c in code:
        for out in c["outputs"]:
            assert out["output_type"] != "error", source(c)[:80]
            assert out.get("name") != "stderr", f"stderr in: {source(c)[:80]}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_structure(path):
    md = "\n".join(source(c) for c in cells(path) if c["cell_type"] == "markdown")
    assert md.lstrip().startswith("<!-- nav -->")
    for part in ["**What you will learn**", "## Summary", "**Glossary terms introduced**", "GLOSSARY.md"]:
        assert part in md, part
    code = [source(c) for c in cells(path) if c["cell_type"] == "code"]
    assert code[0].startswith("# Setup")


@pytest.mark.parametrize("path", [p for p in NOTEBOOKS if p.stem[:2] in {"01", "02", "03", "04", "05"}],
                         ids=lambda p: p.stem)
def test_exercise_with_hint_and_collapsed_solution(path):
    code = [c for c in cells(path) if c["cell_type"] == "code"]
    assert any("exercises.check_" in source(c) for c in code)
    assert any("exercises.hint(" in source(c) for c in code)
    solutions = [c for c in code if source(c).startswith("# Solution")]
    assert solutions and all(c["metadata"].get("jupyter", {}).get("source_hidden") for c in solutions)
    assert any("✓ correct" in "".join(o.get("text", "")) for c in solutions for o in c["outputs"])


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_a_static_figure_before_every_widget(path):
    code = [c for c in cells(path) if c["cell_type"] == "code"]
    for i, c in enumerate(code):
        if "_explorer(" in source(c):
            assert "nbval-ignore-output" in c["metadata"].get("tags", [])
            before = code[i - 1]
            assert any("image/png" in o.get("data", {}) for o in before["outputs"]), source(c)[:60]


def test_ignore_tags_only_on_widget_cells_or_with_a_reason():
    for path in NOTEBOOKS:
        for c in cells(path):
            if "nbval-ignore-output" in c.get("metadata", {}).get("tags", []):
                reason = source(c).startswith("# timing-dependent output:")
                assert "_explorer(" in source(c) or reason, f"{path.name}: {source(c)[:60]}"
            elif source(c).startswith("# timing-dependent output:"):
                raise AssertionError(f"{path.name}: a timing-dependent cell without the nbval-ignore-output tag: "
                                     f"{source(c)[:60]}")


def test_navigation_links_are_in_sync():
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "nav.py"), "--check"], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_readme_lists_every_notebook_and_the_glossary_exists():
    readme = (ROOT / "README.md").read_text()
    for path in NOTEBOOKS:
        assert path.name in readme
    assert (ROOT / "GLOSSARY.md").exists() and "GLOSSARY.md" in readme


EXTRA = "# extra code"


def bound_and_used(code):
    """Names a cell binds and names it reads (IPython magics and shell lines dropped)."""
    import ast

    lines = [line for line in code.splitlines() if not line.lstrip().startswith(("%", "!"))]
    tree = ast.parse("\n".join(lines))
    bound, used = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (bound if isinstance(node.ctx, ast.Store | ast.Del) else used).add(node.id)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            bound.add(node.name)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            bound.update((a.asname or a.name).split(".")[0] for a in node.names)
    return bound, used


def extra_code_leaks(path):
    """Later cells that read a name last bound in an ``# extra code`` cell: they break when it is skipped."""
    last_bound_in_extra, leaks = {}, []
    for cell in cells(path):
        code = source(cell)
        if cell["cell_type"] != "code" or not code.strip():
            continue
        bound, used = bound_and_used(code)
        leaks += [(name, code.splitlines()[0]) for name in sorted(used - bound) if last_bound_in_extra.get(name)]
        last_bound_in_extra.update({name: code.startswith(EXTRA) for name in bound})
    return leaks


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_extra_code_cells_can_be_skipped(path):
    """A cell marked ``# extra code`` is one a learner may skip: no later cell may need a name it defines."""
    assert extra_code_leaks(path) == [], "define these names in a cell that is not extra code"


def test_the_extra_code_check_finds_a_leak(tmp_path):
    def cell(text):
        return {"cell_type": "code", "source": text, "metadata": {}, "outputs": [], "execution_count": None}

    nb = {"cells": [cell("# Setup\nx = 1"), cell("# extra code: a figure\nruns = x + 1\nfor i in range(2): pass"),
                    cell("print(runs, i)"), cell("runs = 3\nprint(runs)")], "metadata": {}, "nbformat": 4,
          "nbformat_minor": 5}
    path = tmp_path / "nb.ipynb"
    path.write_text(json.dumps(nb))
    assert [name for name, _ in extra_code_leaks(path)] == ["i", "runs"]


OLD_NOTATION = {
    r"\$k\$ nodes|the \$k\$ nodes|\bk nodes\b|by \$k\$\b": "nodes are N (k is top-k's)",
    r"\$k ?[-−] ?b\$": "a step uses the first N − r replies (r backups)",
    r"\$S_i\$": "a node's shard is D_i (S counts server shards)",
    r"\$b = 8": "bytes per message are m (b is the batch size)",
    r"1/\$\\eta\$|factor \$\\eta\$": "the halving factor is f (η is the learning rate)",
}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_one_symbol_per_meaning(path):
    """The notation table of GLOSSARY.md, checked for the symbols that had two meanings."""
    import re

    md = "\n".join(source(c) for c in cells(path) if c["cell_type"] == "markdown")
    found = [(m.group(0), why) for pattern, why in OLD_NOTATION.items() for m in re.finditer(pattern, md)]
    assert found == [], "see the notation table in GLOSSARY.md"
    assert "## Notation" in (ROOT / "GLOSSARY.md").read_text()
