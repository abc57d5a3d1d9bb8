"""``reactlab serve --schedule``: the admission schedule the CLI builds and hands to the server, and
its one-line errors."""

from __future__ import annotations

import importlib.util

import pytest
from typer.testing import CliRunner

from reactlab.cli import app
from reactlab.llm.scripted import ScriptedLLM
from reactlab.serve import serve
from reactlab.serve.batcher import Schedule
from reactlab.types import GenParams


@pytest.fixture
def served_options(monkeypatch):
    """``main_serve`` replaced by a recorder of its ``server_options`` (no model, no server)."""
    seen: dict = {}
    monkeypatch.setattr("reactlab.serve.main_serve", lambda model, **kw: seen.update(kw["server_options"]))
    return seen


def invoke(*args):
    return CliRunner().invoke(app, ["serve", "scripted:x.json", *args])


def test_fcfs_is_the_default(served_options):
    res = invoke()
    assert res.exit_code == 0, res.output
    assert served_options["schedule"] == Schedule() and served_options["schedule"].cost is None


def test_sjf_by_max_tokens_with_its_age_bound(served_options):
    res = invoke("--schedule", "sjf:max_tokens", "--sjf-max-wait", "5")
    assert res.exit_code == 0, res.output
    schedule = served_options["schedule"]
    assert schedule.max_wait_s == 5 and schedule.cost("q", GenParams(max_new_tokens=7)) == 7


@pytest.mark.parametrize(("args", "message"), [
    (["--schedule", "lifo"], "--schedule 'lifo': use fcfs, sjf:max_tokens or sjf:PATH"),
    (["--schedule", "sjf:"], "--schedule 'sjf:': use fcfs"),
    (["--schedule", "sjf:max_tokens", "--sjf-max-wait", "-1"], "Invalid value for '--sjf-max-wait'"),
])
def test_a_bad_schedule_is_a_one_line_error(served_options, args, message):
    res = invoke(*args)
    assert res.exit_code == 2 and message in res.output and "Traceback" not in res.output, res.output
    assert not served_options  # refused before any model is built


def test_a_predictor_file_needs_the_per_call_predictor(served_options, tmp_path):
    res = invoke("--schedule", f"sjf:{tmp_path / 'missing.json'}")
    assert res.exit_code == 2 and "Traceback" not in res.output, res.output
    assert len([x for x in res.output.splitlines() if x.startswith("error:")]) == 1
    if importlib.util.find_spec("reactlab.budget.calls") is None:
        assert "this reactlab has no per-call token predictor (reactlab.budget.calls)" in res.output
    else:
        assert "missing.json" in res.output
    assert not served_options


def test_serve_hands_its_schedule_to_the_batcher():
    schedule = Schedule(lambda prompt, params: 1.0, max_wait_s=2)
    with serve(ScriptedLLM(["x"]), schedule=schedule) as server:
        assert server.batcher.schedule is schedule
