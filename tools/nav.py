"""Keep the "< previous | contents | next >" links at the top and bottom of every notebook in sync.

Usage: ``python tools/nav.py`` rewrites the links in place; ``python tools/nav.py --check`` exits 1 when a
notebook's links are out of date (tests/test_notebooks.py runs the check).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
MARK = "<!-- nav -->"


def title(path: Path) -> str:
    """The notebook's first level-1 heading."""
    for cell in json.loads(path.read_text())["cells"]:
        for line in "".join(cell["source"]).splitlines():
            if cell["cell_type"] == "markdown" and line.startswith("# "):
                return line[2:].strip()
    return path.stem


def nav_line(paths: list[Path], i: int) -> str:
    prev = f"[< {title(paths[i - 1])}]({paths[i - 1].name})" if i > 0 else "< (start)"
    nxt = f"[{title(paths[i + 1])} >]({paths[i + 1].name})" if i + 1 < len(paths) else "(end) >"
    return f"{MARK}\n{prev} | [contents](../README.md#the-notebooks) | {nxt}"


def _normal(cells: list[dict]) -> str:
    """Cells as text, with each source joined (Jupyter stores it as a list of lines, or one string)."""
    return json.dumps([{**c, "source": "".join(c["source"])} for c in cells], sort_keys=True)


def sync(check: bool = False) -> list[str]:
    """Rewrite (or, with ``check``, only compare) the nav cells; return the notebooks that were stale."""
    paths = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    stale = []
    for i, path in enumerate(paths):
        nb = json.loads(path.read_text())
        cells = [c for c in nb["cells"] if not "".join(c["source"]).startswith(MARK)]
        line = nav_line(paths, i)
        top = {"cell_type": "markdown", "id": "nav-top", "metadata": {}, "source": [line]}
        new = [top, *cells, {**top, "id": "nav-bottom"}]
        if _normal(new) != _normal(nb["cells"]):
            stale.append(path.name)
            if not check:
                nb["cells"] = new
                path.write_text(json.dumps(nb, sort_keys=True, indent=1, ensure_ascii=False) + "\n")
    return stale


if __name__ == "__main__":
    is_check = "--check" in sys.argv
    out_of_date = sync(check=is_check)
    if out_of_date:
        print(("out of date: " if is_check else "updated: ") + ", ".join(out_of_date))
    sys.exit(1 if is_check and out_of_date else 0)
