"""Studies register as entry points of `peft_utils.studies` (pyproject.toml), so another package
can add one; the notebooks they execute ship in the package, so an installed wheel finds both
without the checkout."""
from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

import fake_packages
from peft_utils.core.config import ConfigError
from peft_utils.core.study import GROUP, NOTEBOOKS, registered, study, study_of_config

REPO = Path(__file__).resolve().parents[1]
DECLARED = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["entry-points"][GROUP]


@pytest.fixture
def fresh_registry():
    """registered() is read once per process; a test that installs a study reads it again,
    and the next test sees the installed packages only."""
    registered.cache_clear()
    yield
    registered.cache_clear()
    sys.modules.pop("speech_study", None)


def install_fake_package(root: Path, module_source: str) -> None:
    """A package `speech-study` on sys.path as pip leaves one, whose entry point registers the
    `speech` study."""
    fake_packages.install_fake_package(root, "speech_study", module_source, GROUP,
                                       {"speech": "speech_study:STUDY"})

def test_every_declared_study_is_registered_and_names_its_notebook():
    assert set(DECLARED) == {"classification", "mt"}
    assert {name: ep.value for name, ep in registered().items() if name in DECLARED} == DECLARED
    for name in DECLARED:
        found = study(name)
        assert found.name == name and found.notebook.is_file()
        assert found.notebook.parent == NOTEBOOKS
    assert study(None).name == "classification"


def test_the_package_notebooks_are_the_checkout_notebooks():
    """One copy in git: peft_utils/notebooks links to the notebooks/ users open."""
    assert NOTEBOOKS == REPO / "notebooks"
    assert (REPO / "peft_utils" / "notebooks").is_symlink()


def test_a_study_of_another_package_is_found(tmp_path, monkeypatch, fresh_registry):
    install_fake_package(tmp_path, "from dataclasses import replace\n"
                                   "from peft_utils.mt.study import STUDY as MT\n"
                                   "STUDY = replace(MT, name='speech')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert study("speech").name == "speech"
    assert study_of_config({"kind": "speech"}) is study("speech")
    with pytest.raises(ConfigError, match="use one of classification, mt, speech"):
        study("vision")


def test_an_entry_point_that_is_not_a_study_is_refused(tmp_path, monkeypatch, fresh_registry):
    install_fake_package(tmp_path, "STUDY = 'not a study'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(TypeError, match="speech_study:STUDY of peft_utils.studies is not the "
                                        "Study called 'speech'"):
        study("speech")


def build_wheel(out: Path) -> Path:
    """The wheel `pip wheel` builds from the checkout (a copy of what the build reads, so
    build/ and the egg-info land outside the worktree)."""
    src = out / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    for name in ("peft_utils", "notebooks"):
        shutil.copytree(REPO / name, src / name, symlinks=True,
                        ignore=shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps",
                    "--no-build-isolation", "--no-index", "-q", "-w", str(out)],
                   check=True, capture_output=True, timeout=300)
    return next(out.glob("peft_utils-*.whl"))


def test_the_wheel_holds_the_notebooks_and_the_entry_points(tmp_path):
    wheel = zipfile.ZipFile(build_wheel(tmp_path))
    for notebook in (REPO / "notebooks").glob("*.ipynb"):
        assert wheel.read(f"peft_utils/notebooks/{notebook.name}") == notebook.read_bytes()
    entry_points = configparser.ConfigParser()
    info = next(n for n in wheel.namelist() if n.endswith(".dist-info/entry_points.txt"))
    entry_points.read_string(wheel.read(info).decode())
    assert dict(entry_points[GROUP]) == DECLARED

    # Installed (unpacked where pip would put it) and run away from the checkout: the entry
    # points come from the wheel's metadata, the notebooks from the package.
    site = (tmp_path / "site").resolve()
    wheel.extractall(site)
    probe = ("import peft_utils; from peft_utils.core.study import study; "
             "print(peft_utils.__file__); "
             "[print(study(name).notebook) for name in ('classification', 'mt')]")
    env = {**os.environ, "PYTHONPATH": str(site)}
    shown = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, check=True,
                           capture_output=True, text=True, timeout=120).stdout.split()
    package, *notebooks = map(Path, shown)
    assert package.is_relative_to(site)
    assert [n.relative_to(site).as_posix() for n in notebooks] == [
        "peft_utils/notebooks/train.ipynb", "peft_utils/notebooks/mt_train.ipynb"]
    assert all(n.is_file() for n in notebooks)
