"""What gets installed: only the `pql` package, with every module and data file, next to another
project's `models` and `features`; every package pql imports is a declared requirement."""

from __future__ import annotations

import ast
import base64
import hashlib
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from collections.abc import Iterator
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SUB_PACKAGES = {"features", "models", "scoring", "flows"}  # top-level folders, importable only under pql.


def python_files(folder: Path) -> Iterator[Path]:
    """Every .py file under `folder`, following the symbolic links that map the sub-packages into pql."""
    for directory, subfolders, files in os.walk(folder, followlinks=True):
        subfolders[:] = [name for name in subfolders if name != "__pycache__"]
        yield from (Path(directory) / name for name in files if name.endswith(".py"))


def absolute_imports(path: Path, *, in_functions: bool = True) -> Iterator[str]:
    """The top-level name of every absolute import in the module: at any depth (lazy ones count too), or
    with `in_functions` False only those run when the module is imported."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    skipped: set[int] = set()
    if not in_functions:
        for function in ast.walk(tree):
            if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                skipped.update(id(node) for node in ast.walk(function))
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            yield from (alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module.split(".")[0]


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared_distributions() -> set[str]:
    """The distributions pyproject.toml requires, in the dependencies or in any extra."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    requirements = [
        *project["dependencies"],
        *(r for extra in project["optional-dependencies"].values() for r in extra),
    ]
    return {canonical(re.match(r"[A-Za-z0-9._-]+", requirement).group()) for requirement in requirements}


def third_party(name: str) -> bool:
    return name not in sys.stdlib_module_names and name not in {"__future__", "pql"}


def undeclared_imports(folder: Path) -> dict[str, list[str]]:
    """Packages imported under `folder` (its own modules aside) that no declared requirement provides,
    each with the distributions that do provide it here."""
    declared = declared_distributions()
    providers = packages_distributions()
    own = {path.stem for path in folder.rglob("*")}
    undeclared: dict[str, list[str]] = {}
    for path in python_files(folder):
        for name in absolute_imports(path):
            if not third_party(name) or (name in own and folder.name != "pql"):
                continue
            distributions = {canonical(found) for found in providers.get(name, [])}
            if not distributions & declared:
                undeclared.setdefault(name, sorted(distributions) or ["not installed"])
    return undeclared


def test_every_package_pql_imports_is_a_declared_requirement() -> None:
    assert undeclared_imports(ROOT / "pql") == {}


@pytest.mark.parametrize("folder", ["tests", "benchmarks"])
def test_every_package_the_tests_and_benchmarks_import_is_declared(folder: str) -> None:
    assert undeclared_imports(ROOT / folder) == {}


def test_the_sub_packages_are_imported_only_under_pql() -> None:
    """`import models` would find another project's package (or none) once pql is installed.

    Inside test functions such an import may be the point (a test that sets up another project's
    `models`), so there only imports at module level count; everywhere else, lazy ones count too."""
    offenders = [
        f"{path.relative_to(ROOT)}: {name}"
        for folder in ("pql", "tests", "benchmarks")
        for path in python_files(ROOT / folder)
        for name in absolute_imports(path, in_functions=folder != "tests")
        if name in SUB_PACKAGES
    ]
    assert offenders == []


def _distribution_files(source: Path) -> None:
    """Copy what a source distribution holds (not the checkout's build leftovers, venv or tests), links
    kept as links, so the build writes its build/ and egg-info there and not into the checkout."""
    ignored = shutil.ignore_patterns(
        ".git",
        ".venv",
        "__pycache__",
        "build",
        "dist",
        "*.egg-info",
        ".pql",
        ".*_cache",
        "tests",
        "benchmarks",
    )
    shutil.copytree(ROOT, source, symlinks=True, ignore=ignored)


def _write_wheel(folder: Path, name: str, files: dict[str, str]) -> Path:
    """A minimal wheel of `files` (path -> text): another project, installed by pip like any other."""
    dist_info = f"{name}-1.0.dist-info"
    contents = {
        **files,
        f"{dist_info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n",
        f"{dist_info}/WHEEL": "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for path, text in contents.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    record.append(f"{dist_info}/RECORD,,")
    wheel = folder / f"{name}-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in {**contents, f"{dist_info}/RECORD": "\n".join(record) + "\n"}.items():
            archive.writestr(path, text)
    return wheel


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """pql's wheel, built from a copy of the checkout (pip builds it with the pyproject build backend)."""
    work = tmp_path_factory.mktemp("wheel")
    _distribution_files(work / "source")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--quiet",
            "-w",
            str(work / "dist"),
            str(work / "source"),
        ],
        check=True,
    )
    (built,) = (work / "dist").glob("pql_pipeline-*.whl")
    return built


@pytest.mark.slow
def test_the_wheel_installs_only_the_pql_package(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        top_level = {name.split("/")[0] for name in archive.namelist()}
    dist_info = "-".join(wheel.name.split("-")[:2]) + ".dist-info"  # pql_pipeline-0.2.0.dist-info
    assert top_level == {"pql", dist_info}


@pytest.mark.slow
def test_the_wheel_holds_every_file_of_the_package(wheel: Path) -> None:
    """Every module and every data file (the GX suites, ...) under pql/ and its linked sub-packages."""
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    expected = {
        path.relative_to(ROOT).as_posix()
        for directory, subfolders, files in os.walk(ROOT / "pql", followlinks=True)
        if "__pycache__" not in Path(directory).parts
        for path in (Path(directory) / name for name in files)
    }
    assert {
        "pql/features/builder.py",
        "pql/flows/nightly.py",
        "pql/validation/expectations/pql/events/counts.json",
    } <= expected
    assert any(
        name.startswith("pql/validation/expectations/pql/") and name.endswith(".json") for name in expected
    )
    assert expected - names == set()


@pytest.fixture
def venv_with_another_project(tmp_path: Path) -> Path:
    """A fresh virtual environment that already holds another project's top-level `models` and
    `features` packages; its Python."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    other = _write_wheel(
        tmp_path,
        "other_project",
        {
            "models/__init__.py": "OWNER = 'other project'\n",
            "features/__init__.py": "OWNER = 'other project'\n",
        },
    )
    _pip_install(python, other)
    return python


def _venv_environment() -> dict[str, str]:
    """This environment without PYTHONPATH: a checkout on it (and its editable install's egg-info) would
    stand in for the installed wheel, for pip and for Python alike."""
    return {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}


def _pip_install(python: Path, wheel: Path) -> None:
    """Install `wheel` alone into the environment of `python` (with this interpreter's pip)."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--quiet",
            "--no-deps",
            "--no-index",
            str(wheel),
        ],
        env=_venv_environment(),
        check=True,
    )


def _reuse_these_dependencies(python: Path) -> None:
    """Installing pql's dependencies into the fresh venv takes minutes; reuse the ones this test runs on.

    A .pth file in the venv's site-packages appends this interpreter's site-packages to sys.path, after
    the venv's own: `pql`, `models` and `features` are found in the venv first, everything else (pandas,
    Prefect, ...) here. Only the path is added: the .pth files in that folder (the checkout's editable
    install of pql) are not run, so the `pql` imported is the installed wheel's.
    """
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        env=_venv_environment(),
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    ours = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    (Path(purelib) / "zz_reuse_test_dependencies.pth").write_text("\n".join(ours) + "\n", encoding="utf-8")


def _run(python: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(python), *args], cwd=cwd, env=_venv_environment(), capture_output=True, text=True, check=False
    )


@pytest.mark.slow
def test_the_wheel_and_another_projects_models_package_live_side_by_side(
    wheel: Path, venv_with_another_project: Path, tmp_path: Path
) -> None:
    python = venv_with_another_project
    _pip_install(python, wheel)
    _reuse_these_dependencies(python)
    elsewhere = tmp_path / "elsewhere"  # not the checkout, where `pql` and `models` are folders
    elsewhere.mkdir()

    check = _run(
        python,
        "-c",
        "import models, features, pql.models.registry, pql.features.builder, pql.flows.nightly;"
        "print(models.OWNER, features.OWNER, pql.__file__, sep='|')",
        cwd=elsewhere,
    )
    assert check.returncode == 0, check.stderr
    models_owner, features_owner, pql_file = check.stdout.strip().split("|")
    assert (models_owner, features_owner) == ("other project", "other project")
    assert Path(pql_file).is_relative_to(python.parents[1])  # the wheel's pql, not the checkout's

    command = _run(python.parent / "pql", "--help", cwd=elsewhere)
    assert command.returncode == 0, command.stderr
    assert "score" in command.stdout
