"""Wall time of each notebook of the course, executed top to bottom in a fresh kernel, as a learner runs it.

Each notebook runs with ``jupyter nbconvert --execute`` into a temporary copy (the committed notebooks are not
touched), one after another, so that only one course cluster runs at a time. Prints a table of seconds per
notebook, the total, and issue 6's goals: under 30 s per notebook, under 3 minutes for the whole course.
Each notebook's time includes starting its kernel and its Dask cluster (about 3 s here); compare the numbers
of one run, on a quiet machine: the same notebook takes longer when something else shares the 2 cores.

Run from the repository root::

    .venv/bin/python benchmarks/notebook_times.py             # every notebook, about 3 minutes
    .venv/bin/python benchmarks/notebook_times.py 04 05       # only these
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_GOAL, COURSE_GOAL = 30.0, 180.0
TIMEOUT = 600


def run(notebook: Path, workdir: Path) -> float:
    """Seconds to execute ``notebook`` (copied into ``workdir``) in a fresh kernel; raise on a failed cell."""
    copy = workdir / notebook.name
    shutil.copy(notebook, copy)
    env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONHASHSEED": "0"}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute",
                           "--inplace", f"--ExecutePreprocessor.timeout={TIMEOUT}", str(copy)],
                          cwd=workdir, env=env, capture_output=True, text=True, timeout=TIMEOUT + 60)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{notebook.name} failed:\n{done.stderr[-3000:]}")
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("only", nargs="*", help="notebook numbers to run (default: all)")
    args = parser.parse_args(argv)
    notebooks = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    if args.only:
        notebooks = [nb for nb in notebooks if nb.name[:2] in set(args.only)]
        if not notebooks:
            parser.error(f"no notebook numbered {' '.join(args.only)}")
    times: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="dml-notebook-times-") as tmp:
        workdir = Path(tmp)
        for notebook in notebooks:
            times[notebook.stem] = run(notebook, workdir)
            flag = "" if times[notebook.stem] <= NOTEBOOK_GOAL else "  over the 30 s goal"
            print(f"{notebook.stem:<40}{times[notebook.stem]:>8.1f} s{flag}", flush=True)
    total = sum(times.values())
    print(f"{'total':<40}{total:>8.1f} s  (goal: each under {NOTEBOOK_GOAL:.0f} s, all under {COURSE_GOAL:.0f} s: "
          f"{'met' if total <= COURSE_GOAL and max(times.values()) <= NOTEBOOK_GOAL else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
