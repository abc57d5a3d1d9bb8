"""A non-editable install is complete: the wheel carries the prompts, the recipes and the data pack,
and the installed package (not the checkout) runs `reactlab demo --help` and a 2-question run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The wheel built from this checkout, installed with ``pip install --target`` (dependencies
    come from the running environment): ``(wheel, target dir)``."""
    tmp = tmp_path_factory.mktemp("pkg")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp / "dist"), str(ROOT)], check=True, timeout=300)
    (wheel,) = (tmp / "dist").glob("reactlab-*.whl")
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(tmp / "site"),
                    str(wheel)], check=True, timeout=300)
    return wheel, tmp / "site"


def _run(site: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(site), "REACTLAB_HOME": str(cwd / "home")}
    env.pop("REACTLAB_DATA", None)
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=600)


def test_the_wheel_carries_prompts_recipes_and_data(installed):
    wheel, _ = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    for want in ("reactlab/agents/prompts/hotpotqa_react.yaml", "reactlab/recipes/sft_smollm2_lora.yaml",
                 "reactlab/datapack/README.md", "reactlab/datapack/wiki/corpus.jsonl.gz",
                 "reactlab/datapack/hotpotqa/dev_distractor_eval.json.gz", "reactlab/datapack/fireact/LICENSE"):
        assert want in names, want


def test_the_installed_package_runs(installed, tmp_path):
    _, site = installed
    where = _run(site, "-c", "import reactlab, reactlab.paths as p; print(reactlab.__file__); print(p.data_dir())",
                 cwd=tmp_path)
    assert where.returncode == 0, where.stderr
    assert all(line.startswith(str(site)) for line in where.stdout.split()), where.stdout  # not the checkout
    res = _run(site, "-m", "reactlab.cli", "demo", "--help", cwd=tmp_path)
    assert res.returncode == 0 and "FireAct loop in miniature" in res.stdout, res.stderr
    res = _run(site, "-m", "reactlab.cli", "run", "--agent", "oracle", "--limit", "2", "--out", "runs/o", "-q",
               cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "n=2  EM=1.000" in res.stdout
    assert json.loads((tmp_path / "runs/o/summary.json").read_text())["n"] == 2
