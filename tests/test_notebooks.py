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


def test_navigation_links_are_in_sync():
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "nav.py"), "--check"], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_readme_lists_every_notebook_and_the_glossary_exists():
    readme = (ROOT / "README.md").read_text()
    for path in NOTEBOOKS:
        assert path.name in readme
    assert (ROOT / "GLOSSARY.md").exists() and "GLOSSARY.md" in readme
