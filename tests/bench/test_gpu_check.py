"""bench/gpu_check.py: a step's time limit and failure are its own (the rest go on), the table and
JSON name every step's status, and ``--tiny`` passes on a CPU within the 3 minutes CI gives it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

STATUSES = {"ok", "skipped", "failed", "timeout"}


SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "gpu_check.py"


@pytest.fixture(scope="module")
def gc():
    """The module, registered in ``sys.modules`` while loading (its dataclasses look themselves up there)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = mod
    try:
        spec.loader.exec_module(mod)
    finally:
        del sys.modules["gpu_check"]
    return mod


def test_call_reports_timeout_and_failure(gc, tmp_path):
    status, why, _ = gc.call([sys.executable, "-c", "import time; time.sleep(30)"], 1, tmp_path / "a.log")
    assert (status, why) == ("timeout", "over 1 s")
    status, why, _ = gc.call([sys.executable, "-c", "import sys; print('x'); sys.exit('bad recipe: trl.lr')"], 30,
                             tmp_path / "b.log")
    assert status == "failed" and why == "exit 1: bad recipe: trl.lr"
    status, _, out = gc.call([sys.executable, "-c", "print('{\"a\": 1}')"], 30, tmp_path / "c.log")
    assert status == "ok" and gc.last_json("noise\n" + out) == {"a": 1}


def test_table_names_every_status(gc):
    steps = [gc.Step("run", "ok", "", 1.5, {"episodes": 4}), gc.Step("qlora", "skipped", "no CUDA"),
             gc.Step("dpo", "timeout", "over 45 s", 45.0)]
    text = gc.table(steps)
    assert "skipped (no CUDA)" in text and "timeout (over 45 s)" in text and "episodes 4" in text


def test_react_rows_are_chat_rows(gc):
    rows = gc.react_rows(6)
    assert all(r["messages"][0]["role"] == "user" and r["messages"][-1]["role"] == "assistant" for r in rows)
    assert len({len(r["messages"]) for r in rows}) > 1  # varied lengths


@pytest.mark.slow
def test_tiny_check_passes_on_this_machine(tmp_path):
    """The whole check on tiny models: every step ok, or skipped for want of CUDA. Each step runs
    under its own time limit (a step past it is a ``timeout``, which fails here); the whole is not
    timed, since a cold Jittor kernel cache alone takes minutes on some CPUs."""
    res = subprocess.run([sys.executable, str(SCRIPT), "--tiny", "--out", str(tmp_path)], capture_output=True, text=True,
                         timeout=600)
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    steps = {s["name"]: s for s in report["steps"]}
    print(res.stdout)
    assert res.returncode == 0, res.stdout + res.stderr[-3000:]
    assert list(steps) == ["prepare", "run", "sft", "qlora", "grpo", "dpo", "export", "jittor", "gpu-tests"]
    assert all(s["status"] in STATUSES for s in steps.values())
    import torch

    expect_skipped = set() if torch.cuda.is_available() else {"qlora", "gpu-tests"}
    for name, s in steps.items():
        assert s["status"] == ("skipped" if name in expect_skipped else "ok"), (name, s)
        assert s["status"] in res.stdout.split(name, 1)[1].splitlines()[0]  # the table names it
    assert steps["sft"]["metrics"]["speed_ratio"] > 0 and steps["grpo"]["metrics"]["steps"] == 2
    assert steps["dpo"]["metrics"]["steps"] == 5 and steps["export"]["metrics"]["gguf"].endswith(".gguf")
    assert report["wall_s"] > 0
