"""Consistency checks between pyproject.toml, environment.yml, README.md and .ci/run.

Fast and offline: these only read files from the repository.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
PROJECT_NAME = "dml-lesson"
# Listed in environment.yml for conda's sake, not package dependencies of the project.
CONDA_ONLY = {"python", "pip"}
# pip extras that conda-forge ships as separate packages.
EXTRAS_AS_PACKAGES = {("dask", "distributed"): ["distributed"]}

CONDA_SPEC = re.compile(r"^\s*(?P<name>[A-Za-z0-9_.\-]+)\s*(?P<constraint>.*?)\s*$")


def pyproject() -> dict:
    with (ROOT / "pyproject.toml").open("rb") as f:
        return tomllib.load(f)


def environment() -> dict:
    with (ROOT / "environment.yml").open(encoding="utf-8") as f:
        return yaml.safe_load(f)


def lower_bound(specifier: str, where: str, name: str) -> Version | None:
    """Return the version of a single ``>=`` bound, None for no bound; fail on anything else."""
    specifier = specifier.replace(" ", "")
    if not specifier:
        return None
    match = re.fullmatch(r">=([0-9][0-9A-Za-z.]*)", specifier)
    if match is None:
        pytest.fail(f"{where}: package {name!r} must use a plain '>=' bound, got {specifier!r}")
    return Version(match.group(1))


def expand(reqs: list[str], extras_table: dict[str, list[str]]) -> list[Requirement]:
    """Parse requirement strings, replacing self-references (dml-lesson[x]) by extra x."""
    out: list[Requirement] = []
    for text in reqs:
        req = Requirement(text)
        if canonicalize_name(req.name) == PROJECT_NAME:
            for extra in sorted(req.extras):
                out += expand(extras_table[extra], extras_table)
        else:
            out.append(req)
    return out


def pyproject_bounds() -> dict[str, Version | None]:
    """Runtime dependencies plus the ``test`` extra, as {normalized name: lower bound}."""
    project = pyproject()["project"]
    extras = project.get("optional-dependencies", {})
    bounds: dict[str, Version | None] = {}
    for req in expand(project["dependencies"] + extras["test"], extras):
        name = canonicalize_name(req.name)
        bound = lower_bound(str(req.specifier), "pyproject.toml", name)
        bounds[name] = bound
        for extra in sorted(req.extras):
            for pkg in EXTRAS_AS_PACKAGES.get((name, extra), []):
                bounds[canonicalize_name(pkg)] = bound
    return bounds


def conda_bounds() -> dict[str, Version | None]:
    """All dependencies of environment.yml: conda's, and the pip section's for packages not on conda-forge."""
    bounds: dict[str, Version | None] = {}
    for dep in environment()["dependencies"]:
        if isinstance(dep, dict):  # the "pip:" section, minus the project itself
            for line in dep.get("pip", []):
                if not line.replace(" ", "").startswith(("-e", "--editable")):
                    req = Requirement(line)
                    name = canonicalize_name(req.name)
                    bounds[name] = lower_bound(str(req.specifier), "environment.yml (pip)", name)
            continue
        match = CONDA_SPEC.match(str(dep))
        assert match, f"environment.yml: cannot parse dependency {dep!r}"
        name = canonicalize_name(match["name"])
        bounds[name] = lower_bound(match["constraint"], "environment.yml", name)
    return bounds


def test_environment_yml_matches_pyproject() -> None:
    py = pyproject_bounds()
    conda = {k: v for k, v in conda_bounds().items() if k not in CONDA_ONLY}
    problems = [
        f"{name}: only in pyproject.toml (>= {py[name]})"
        for name in sorted(py.keys() - conda.keys())
    ]
    problems += [
        f"{name}: only in environment.yml (>= {conda[name]})"
        for name in sorted(conda.keys() - py.keys())
    ]
    problems += [
        f"{name}: lower bound {py[name]} in pyproject.toml but {conda[name]} in environment.yml"
        for name in sorted(py.keys() & conda.keys())
        if py[name] != conda[name]
    ]
    assert not problems, "environment.yml and pyproject.toml disagree:\n" + "\n".join(problems)


def test_environment_yml_is_conda_forge_and_installs_the_project() -> None:
    env = environment()
    assert env["name"] == PROJECT_NAME
    assert env["channels"] == ["conda-forge"]
    pip_sections = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert pip_sections, "environment.yml has no pip section"
    assert any(line.replace(" ", "") in {"-e.", "--editable."} for line in pip_sections[0]), (
        "environment.yml's pip section must install the project with '-e .'"
    )
    assert "pip" in conda_bounds(), "environment.yml uses a pip section but does not list pip"


def test_python_version_matches() -> None:
    requires = pyproject()["project"]["requires-python"].replace(" ", "")
    assert requires == ">=3.11", f"requires-python is {requires!r}"
    conda = conda_bounds()
    assert "python" in conda, "environment.yml does not pin python"
    assert conda["python"] == Version("3.11"), (
        f"environment.yml has python>={conda['python']} but pyproject.toml has {requires}"
    )


def quick_start_commands() -> list[list[str]]:
    """The commands in the single fenced block under the README's '## Quick start' heading."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = re.search(r"^## Quick start[ \t]*\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert section, "README.md has no '## Quick start' section"
    blocks = re.findall(r"^```[^\n]*\n(.*?)^```", section.group(1), re.M | re.S)
    assert len(blocks) == 1, f"Quick start must hold exactly one fenced block, found {len(blocks)}"
    return [shlex.split(line) for line in blocks[0].splitlines() if line.strip()]


def test_readme_quick_start_has_exactly_the_two_commands() -> None:
    assert quick_start_commands() == [
        ["python3", "course.py", "lab"],
        ["python3", "course.py", "test"],
    ]


def test_ci_runs_the_quick_start_test_command() -> None:
    test_command = quick_start_commands()[1]
    ci = ROOT / ".ci" / "run"
    commands = []
    for line in ci.read_text(encoding="utf-8").splitlines():
        words = shlex.split(line, comments=True)
        if words and words[0] == "exec":
            words = words[1:]
        if words:
            commands.append(words)
    assert test_command in commands, (
        f".ci/run does not run {shlex.join(test_command)!r}; its commands are {commands}"
    )
