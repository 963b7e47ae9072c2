"""Set up and run the dml-lesson course with nothing but Python 3.11+.

Usage::

    python3 course.py lab  [jupyter lab arguments...]
    python3 course.py test [pytest arguments...]

Both subcommands first make sure that ``.venv`` exists in the repository and that the course is
installed into it with ``pip install -e ".[test]"``. The install is skipped when
``.venv/.dml-lesson-stamp`` holds the SHA-256 of the current ``pyproject.toml``.

``lab`` opens JupyterLab on 127.0.0.1 with the ``notebooks/`` folder as its root.
``test`` runs ``ruff check .`` and then ``pytest`` (unit tests and, through the settings in
``pyproject.toml``, ``--nbval`` on every notebook); it exits non-zero if either fails, and
treats "no tests collected" as a failure.

This script uses the standard library only.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
EXE = ".exe" if os.name == "nt" else ""
VENV_PYTHON = BIN / f"python{EXE}"
STAMP = VENV / ".dml-lesson-stamp"
PYPROJECT = ROOT / "pyproject.toml"
NOTEBOOKS = ROOT / "notebooks"

PYTEST_NO_TESTS_COLLECTED = 5
USAGE = "usage: python3 course.py {lab,test} [arguments passed through...]"


def say(message: str) -> None:
    """Print one short progress line, flushed so it appears before any child output."""
    print(f"[course] {message}", flush=True)


def fail(message: str, code: int = 1) -> int:
    """Print an error line to stderr and return ``code``."""
    print(f"[course] error: {message}", file=sys.stderr, flush=True)
    return code


def run(cmd: Sequence[str | os.PathLike[str]], env: dict[str, str] | None = None) -> int:
    """Run ``cmd`` in the repository root and return its exit code."""
    return subprocess.call([os.fspath(c) for c in cmd], cwd=ROOT, env=env)


def pyproject_hash() -> str:
    """Return the SHA-256 hex digest of ``pyproject.toml``."""
    return hashlib.sha256(PYPROJECT.read_bytes()).hexdigest()


def ensure_venv() -> int:
    """Create ``.venv`` if needed and install the course into it unless the stamp is current."""
    if not VENV_PYTHON.exists():
        say(f"creating virtual environment in {VENV.relative_to(ROOT)}/")
        code = run([sys.executable, "-m", "venv", VENV])
        if code != 0 or not VENV_PYTHON.exists():
            return fail(
                "could not create the virtual environment "
                "(on Debian/Ubuntu: apt-get install python3-venv), "
                f"then delete {VENV} and try again"
            )

    digest = pyproject_hash()
    if STAMP.is_file() and STAMP.read_text(encoding="utf-8").strip() == digest:
        say("dependencies up to date (pyproject.toml unchanged), skipping install")
        return 0

    say('installing the course with pip install -e ".[test]" (this can take a few minutes)')
    code = run(
        [VENV_PYTHON, "-m", "pip", "install", "--disable-pip-version-check", "-e", ".[test]"]
    )
    if code != 0:
        STAMP.unlink(missing_ok=True)
        return fail(f"pip install failed with exit code {code}", code)
    STAMP.write_text(digest + "\n", encoding="utf-8")
    say("install done")
    return 0


def is_root() -> bool:
    """Return True when running as root (as CI does), where Jupyter needs ``allow_root``."""
    geteuid = getattr(os, "geteuid", None)
    return geteuid is not None and geteuid() == 0


def first_page() -> Path | None:
    """Return the file JupyterLab opens first: notebooks/README.md, else the first notebook."""
    readme = NOTEBOOKS / "README.md"
    if readme.is_file():
        return readme
    notebooks = sorted(NOTEBOOKS.glob("*.ipynb"))
    return notebooks[0] if notebooks else None


def lab(extra: list[str]) -> int:
    """Start JupyterLab on 127.0.0.1 with notebooks/ as root; ``extra`` goes to jupyter lab."""
    root_dir = NOTEBOOKS if NOTEBOOKS.is_dir() else ROOT
    cmd: list[str] = [
        os.fspath(BIN / f"jupyter{EXE}"),
        "lab",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.root_dir={root_dir}",
    ]
    if is_root():
        cmd.append("--ServerApp.allow_root=True")
    # Jupyter opens only the first positional path; let the user's one win.
    user_gave_path = any(not arg.startswith("-") for arg in extra)
    page = first_page() if root_dir == NOTEBOOKS else None
    if page is not None and not user_gave_path:
        cmd.append(os.fspath(page))
    cmd += extra

    say(f"starting JupyterLab on 127.0.0.1 in {root_dir} (Ctrl+C to stop)")
    if os.name == "posix":
        sys.stdout.flush()
        os.chdir(ROOT)
        os.execv(cmd[0], cmd)  # replaces this process, so Ctrl+C goes straight to Jupyter
    try:
        return run(cmd)
    except KeyboardInterrupt:
        return 130


def test(extra: list[str]) -> int:
    """Run ruff and pytest (with nbval, via pyproject.toml); ``extra`` goes to pytest."""
    say("ruff check .")
    ruff_code = run([BIN / f"ruff{EXE}", "check", "."])

    env = dict(os.environ, PYTHONHASHSEED="0", MPLBACKEND="Agg")
    say(" ".join(["python -m pytest", *extra]))
    pytest_code = run([VENV_PYTHON, "-m", "pytest", *extra], env=env)

    if pytest_code == PYTEST_NO_TESTS_COLLECTED:
        return fail("pytest collected no tests (exit code 5); that counts as a failure")
    if ruff_code != 0 and pytest_code == 0:
        return fail("ruff found problems (see above); run .venv/bin/ruff check --fix . to fix some")
    if ruff_code != 0:
        fail("ruff found problems (see above)")
    if pytest_code != 0:
        return fail(f"pytest failed with exit code {pytest_code}", pytest_code)
    return 0


COMMANDS = {"lab": lab, "test": test}


def main(argv: list[str]) -> int:
    """Dispatch ``argv`` (without the program name) to a subcommand."""
    if sys.version_info < (3, 11):  # noqa: UP036 - this script may run on any python3
        return fail(f"Python 3.11 or newer is needed, this is {sys.version.split()[0]}")
    if not argv or argv[0] in {"-h", "--help", "help"}:
        print(__doc__.strip() if __doc__ else USAGE)
        return 0 if argv else 2
    command, extra = argv[0], argv[1:]
    if command not in COMMANDS:
        print(USAGE, file=sys.stderr)
        return fail(f"unknown command {command!r}", 2)
    code = ensure_venv()
    if code != 0:
        return code
    return COMMANDS[command](extra)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
