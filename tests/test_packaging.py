"""The package installs both ways, with the five top-level folders as subpackages."""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import mksgn

REPO = Path(__file__).resolve().parents[1]
SUBPACKAGES = {"core": "core", "data": "data", "train": "train", "convert": "convert", "deploy": "deploy", "hw_profiles": "hw_profiles"}
SOURCES = ("pyproject.toml", "README.md", "mksgn", *SUBPACKAGES.values())


def test_editable_install_maps_the_top_level_folders():
    # a source-tree mksgn.egg-info may shadow the installed dist-info: look at all of them
    urls = [d.read_text("direct_url.json") for d in importlib.metadata.distributions(name="mksgn")]
    direct = [json.loads(u) for u in urls if u]
    if not any(d.get("dir_info", {}).get("editable") for d in direct):
        pytest.skip("this environment has a regular install; the test below covers it")
    import mksgn.convert
    import mksgn.core
    import mksgn.data
    import mksgn.deploy
    import mksgn.hw_profiles
    import mksgn.train

    for module, folder in zip(
        (mksgn.core, mksgn.data, mksgn.train, mksgn.convert, mksgn.deploy, mksgn.hw_profiles), SUBPACKAGES.values(), strict=True
    ):
        assert Path(module.__file__).resolve() == REPO / folder / "__init__.py"


def test_console_scripts_are_declared():
    scripts = {ep.name: ep.value for ep in importlib.metadata.entry_points(group="console_scripts") if ep.name.startswith("mksgn-")}
    assert scripts["mksgn-data"] == "mksgn.data.data_cli:main"
    assert all(name.startswith("mksgn-") for name in scripts)


def test_regular_install_into_a_target_folder(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in SOURCES:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(path, src / name)
    target = tmp_path / "site"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--disable-pip-version-check", "--target", str(target), str(src)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    for folder in ("mksgn", "mksgn/core", "mksgn/core/kinds", "mksgn/data", "mksgn/data/readers", "mksgn/data/synth", "mksgn/train", "mksgn/convert", "mksgn/deploy", "mksgn/hw_profiles"):
        assert (target / folder / "__init__.py").is_file(), folder
    assert (target / "mksgn" / "data" / "skeletons.py").is_file()
    env = {**os.environ, "PYTHONPATH": str(target)}
    code = "import mksgn.data.skeletons as s, mksgn.deploy.lava_compat; print(s.__file__); print(s.NTU25.num_joints)"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert run.returncode == 0, run.stderr
    where, joints = run.stdout.split()
    assert Path(where).is_relative_to(target) and joints == "25"
    assert mksgn.__version__ == importlib.metadata.version("mksgn")
