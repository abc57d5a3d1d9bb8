"""``reactlab eval``: the matrix's cells are run directories, complete cells are not rerun, one table."""

from __future__ import annotations

import csv
import io

import yaml
from typer.testing import CliRunner

from reactlab.cli import app
from reactlab.config import EvalConfig
from reactlab.evaluate import run_matrix
from reactlab.llm.scripted import ScriptedLLM
from reactlab.report import Summary


def matrix(tmp_path, **extra) -> EvalConfig:
    return EvalConfig.model_validate({
        "out": str(tmp_path / "m"), "models": ["scripted:x"],
        "tasks": [{"name": "hotpotqa", "limit": 3}, {"name": "strategyqa", "limit": 2, "max_steps": 2}],
        "methods": ["cot", "cot_sc"], "run": {"sc_k": 3}, **extra})


def test_cells_table_and_resume(vendored_index, tmp_path):
    calls = []

    def answer(prompt):
        calls.append(prompt)
        return " So the answer is yes."

    llm = ScriptedLLM(answer, name="scripted:x")
    cells = run_matrix(matrix(tmp_path), llms={"scripted:x": llm}, index=vendored_index, progress=False)
    assert [(c.task, c.method) for c in cells] == [("hotpotqa", "cot"), ("hotpotqa", "cot_sc"),
                                                   ("strategyqa", "cot"), ("strategyqa", "cot_sc")]
    root = tmp_path / "m" / "scripted_x"
    assert Summary.read(root / "strategyqa" / "cot_sc").n == 2 and (root / "hotpotqa" / "cot" / "run.json").is_file()
    assert len(calls) == 3 + 3 * 3 + 2 + 2 * 3  # CoT-SC: k samples per question
    rows = list(csv.DictReader(io.StringIO((tmp_path / "m" / "table.csv").read_text())))
    assert [r["metric"] for r in rows] == ["em", "em", "accuracy", "accuracy"] and rows[2]["n"] == "2"
    assert "| scripted:x | strategyqa | cot_sc | accuracy |" in (tmp_path / "m" / "table.md").read_text()
    again = run_matrix(matrix(tmp_path), llms={"scripted:x": llm}, index=vendored_index, progress=False)
    assert len(calls) == 20 and [c.summary.n for c in again] == [c.summary.n for c in cells]  # nothing rerun


def test_a_bad_cell_key_fails_before_anything_runs(tmp_path):
    f = tmp_path / "m.yaml"
    f.write_text(yaml.safe_dump({"out": str(tmp_path / "m"), "models": ["smollm2"], "tasks": ["fever"],
                                 "methods": ["react"], "run": {"limitt": 3}}))
    res = CliRunner().invoke(app, ["eval", str(f)])
    assert res.exit_code == 2 and "limitt: unknown key" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "m").exists()
    res = CliRunner().invoke(app, ["eval", str(f), "run.limitt=null", "tasks=[nosuchtask]"])
    assert res.exit_code == 2
