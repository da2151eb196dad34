"""The package installs both ways, with the five top-level folders as subpackages; the README's pip
route gives working Lava commands in a fresh Python 3.11 environment (slow)."""

from __future__ import annotations

import importlib.metadata
import json
import os
import shlex
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
    src = _copy_sources(tmp_path / "src")
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


def readme_pip_commands() -> list[list[str]]:
    """The commands of the README's "Install with pip" section (its first ``sh`` block), split."""
    text = (REPO / "README.md").read_text()
    section = text.split("\n## Install with pip\n", 1)[1].split("\n## ", 1)[0]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    return [shlex.split(line, comments=True) for line in block.splitlines() if line.strip()]


def _python311() -> str | None:
    """A Python 3.11 interpreter that is not a virtual environment's (to create a clean one from)."""
    for candidate in (getattr(sys, "_base_executable", None), shutil.which("python3.11")):
        if not candidate:
            continue
        probe = subprocess.run([candidate, "-c", "import sys; print(sys.version_info[:2] == (3, 11))"],
                               capture_output=True, text=True, timeout=60)
        if probe.stdout.strip() == "True":
            return candidate
    return None


def _copy_sources(dest: Path) -> Path:
    dest.mkdir()
    for name in SOURCES:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(path, dest / name)
    return dest


def test_readme_pip_commands_are_the_documented_ones():
    from mksgn.deploy.lava_compat import LAVA_INSTALL_COMMAND

    commands = readme_pip_commands()
    assert [c[:2] for c in commands] == [["pip", "install"], ["pip", "install"]]
    assert "." in commands[0] and not any("ignore-requires-python" in a for a in commands[0])
    assert " ".join(commands[1]) == LAVA_INSTALL_COMMAND


@pytest.mark.slow
@pytest.mark.lava
def test_readme_pip_route_in_a_clean_venv_runs_lava(tmp_path):
    """A fresh Python 3.11 venv, exactly the README's pip commands, then the commands end to end."""
    from helpers import save_tiny_student

    from mksgn.deploy.lava_compat import LAVA_INSTALL_COMMAND

    python = _python311()
    if python is None:
        pytest.skip("no Python 3.11 interpreter to create a clean virtual environment from")
    src = _copy_sources(tmp_path / "src")
    env_dir = tmp_path / "env"
    subprocess.run([python, "-m", "venv", str(env_dir)], check=True, timeout=300)
    bin_dir = env_dir / "bin"
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    env.update(PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")

    def sh(argv: list[str], cwd: Path = tmp_path, timeout: int = 900) -> subprocess.CompletedProcess:
        return subprocess.run(argv, capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout)

    def pip(command: list[str]) -> None:
        assert command[0] == "pip"
        proc = sh([str(bin_dir / "python"), "-m", "pip", *command[1:]], cwd=src, timeout=1800)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]

    install_mksgn, install_lava = readme_pip_commands()
    pip(install_mksgn)
    probe = sh([str(bin_dir / "python"), "-c", "import mksgn, torch; print(mksgn.__file__); print(torch.__version__)"])
    assert probe.returncode == 0, probe.stderr
    where, torch_version = probe.stdout.split()
    assert Path(where).is_relative_to(env_dir) and torch_version.startswith("2.13.0")

    # a tiny student for the built-in data, exported and quantised by the clean install's commands
    save_tiny_student(tmp_path / "student.pt")
    graph, qgraph = tmp_path / "student.nir", tmp_path / "student.q.nir"
    for argv in (["mksgn-export", "student.pt", "-o", str(graph), "--samples", "2"],
                 ["mksgn-quantize", str(graph), "-o", str(qgraph), "--samples", "8", "--quiet"]):
        proc = sh([str(bin_dir / argv[0]), *argv[1:]])
        assert proc.returncode == 0, proc.stderr[-3000:]
    lava_run = [str(bin_dir / "mksgn-run"), str(qgraph), "--backend", "lava", "--limit", "1", "--out", "lava.json",
                "--quiet"]

    missing = sh(lava_run)  # without Lava: one line, exit 2, naming the README's second command
    assert missing.returncode == 2 and len(missing.stderr.strip().splitlines()) == 1, missing.stderr[-3000:]
    assert f"`{LAVA_INSTALL_COMMAND}`" in missing.stderr

    pip(install_lava)
    lava = sh(lava_run)
    assert lava.returncode == 0, lava.stderr[-3000:]
    emulator = sh([str(bin_dir / "mksgn-run"), str(qgraph), "--limit", "1", "--out", "emu.json", "--quiet"])
    assert emulator.returncode == 0, emulator.stderr[-3000:]
    on_lava, on_emulator = (json.loads((tmp_path / name).read_text()) for name in ("lava.json", "emu.json"))
    assert on_lava["backend"] == "lava" and on_lava["tag"] == "fixed_pt" and on_lava["samples"] == 1
    for key in ("predictions", "spikes_per_population", "synops_per_synapse"):
        assert on_lava[key] == on_emulator[key], key
