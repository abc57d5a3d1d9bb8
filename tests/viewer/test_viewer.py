"""``reactlab report``: the page's data, its tables and charts, bad input, and the viewer driven in a
real headless Chromium (filter, search, open an episode, compare runs, screenshot)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from reactlab.cli import app
from reactlab.config import RunConfig
from reactlab.llm.scripted import ScriptedLLM
from reactlab.runner import run_from_config
from reactlab.viewer import build_report, load_run, payload

N = 6


@pytest.fixture(scope="module")
def three_runs(vendored_index, tmp_path_factory) -> list[Path]:
    """Three runs over the same 6 HotpotQA eval questions: the oracle (all correct), a model that
    answers "yes" at once, and one that keeps searching until the step limit forces a finish."""
    root = tmp_path_factory.mktemp("runs")
    out = []
    for name, agent, script, steps in (
        ("oracle", "oracle", None, 7),
        ("says-yes", "react", lambda p: " I will guess.\nAction 1: Finish[yes]\n", 7),
        ("searcher", "react", lambda p: " Search it.\nAction 1: Search[Brassia]\n", 2),
    ):
        cfg = RunConfig(out=str(root / name), task="hotpotqa", split="eval", limit=N, agent=agent, max_steps=steps)
        llms = {"default": ScriptedLLM(script, name=name)} if script else None
        run_from_config(cfg, index=vendored_index, llms=llms, progress=False)
        out.append(root / name)
    return out


def test_payload_holds_each_question_once_with_its_supporting_facts(three_runs):
    from reactlab.viewer import gold_facts

    runs = [load_run(p) for p in three_runs]
    for run in runs:
        run.gold = gold_facts(run.spec, {t["id"] for t in run.trajectories})
    data = payload(runs)
    assert [r["label"] for r in data["runs"]] == ["oracle", "says-yes", "searcher"]
    assert len(data["episodes"]) == 3 * N and len(data["questions"]) == N
    q = next(iter(data["questions"].values()))
    assert q["sf"] and all(len(f) == 3 and isinstance(f[0], str) for f in q["sf"])
    oracle = [e for e in data["episodes"] if e["r"] == 0]
    assert all(e["m"] == 1.0 and e["s"] == "finished" for e in oracle)
    searcher = [e for e in data["episodes"] if e["r"] == 2]
    assert {e["s"] for e in searcher} == {"max_steps"}
    assert searcher[0]["st"][0][2] == "Search[Brassia]" and searcher[0]["st"][0][3] == "search"


def test_the_page_is_self_contained_and_escapes_what_runs_hold(three_runs, tmp_path):
    run = tmp_path / "hostile"
    shutil.copytree(three_runs[1], run)
    lines = (run / "trajectories.jsonl").read_text().splitlines()
    rec = json.loads(lines[0])
    rec["question"] = "What </script><script>alert(1)</script> is this?"
    (run / "trajectories.jsonl").write_text("\n".join([json.dumps(rec), *lines[1:]]) + "\n")
    html = build_report([three_runs[0], run], tmp_path / "r.html").read_text()
    assert "<script>alert(1)" not in html  # neither in the data block nor in a table
    assert "http://" not in html and "https://" not in html  # nothing fetched from the network
    assert html.count("<svg") >= 2  # EM by steps, tokens histogram
    assert ">hostile<" in html and "EM ± stderr" in html


def test_a_run_without_summary_is_summarised_from_its_trajectories(three_runs, tmp_path):
    run = tmp_path / "partial"
    shutil.copytree(three_runs[0], run)
    (run / "summary.json").unlink()
    assert load_run(run).summary.n == N


def test_training_loss_curves_come_from_the_adapters_training_record(three_runs, tmp_path):
    run = tmp_path / "ft"
    shutil.copytree(three_runs[1], run)
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "training.json").write_text(json.dumps({"result": {"extra": {"log_history": [
        {"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.2}, {"step": 2, "eval_loss": 1.4}]}}}))
    spec = json.loads((run / "run.json").read_text())
    spec["model"] = "smollm2+adapter"
    (run / "run.json").write_text(json.dumps(spec))
    html = build_report([run], tmp_path / "r.html").read_text()
    assert "Training loss" in html and html.count("<polyline") == 2


def test_loss_curves_of_an_older_record_come_from_its_last_checkpoint(three_runs, tmp_path):
    run = tmp_path / "ft"
    shutil.copytree(three_runs[1], run)
    (tmp_path / "adapter" / "checkpoint-2").mkdir(parents=True)
    (tmp_path / "adapter" / "checkpoint-1").mkdir()
    (tmp_path / "adapter" / "training.json").write_text(json.dumps({"result": {"extra": {}}}))
    (tmp_path / "adapter" / "checkpoint-1" / "trainer_state.json").write_text(json.dumps({"log_history": []}))
    (tmp_path / "adapter" / "checkpoint-2" / "trainer_state.json").write_text(json.dumps({"log_history": [
        {"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.0}]}))
    spec = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**spec, "model": "smollm2+adapter"}))
    html = build_report([run], tmp_path / "r.html").read_text()
    assert "Training loss" in html and html.count("<polyline") == 1


@pytest.mark.parametrize("make, expected", [
    (lambda d: None, "no trajectories.jsonl"),
    (lambda d: (d / "trajectories.jsonl").write_text('{"id": "a", "question": "q"}\n{oops\n'), "trajectories.jsonl:2"),
])
def test_bad_run_dirs_are_one_line_errors(tmp_path, make, expected):
    bad = tmp_path / "bad"
    bad.mkdir()
    make(bad)
    (tmp_path / "keep.html").write_text("old")
    res = CliRunner().invoke(app, ["report", str(bad), "-o", str(tmp_path / "keep.html")])
    assert res.exit_code == 2, res.output
    assert expected in res.output and "Traceback" not in res.output
    assert (tmp_path / "keep.html").read_text() == "old"  # nothing already written is lost


def chromium() -> str | None:
    """Debian's chromium (``.ci/run`` installs it), or ``REACTLAB_CHROMIUM``."""
    return os.environ.get("REACTLAB_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


def test_the_viewer_in_headless_chromium(three_runs, tmp_path):
    browser_path = chromium()
    if browser_path is None:
        if os.environ.get("CI"):
            pytest.fail("no chromium on this CI machine: .ci/run installs Debian's chromium package")
        pytest.skip("no chromium here (apt install chromium, or set REACTLAB_CHROMIUM); CI runs this test")
    from playwright.sync_api import sync_playwright

    res = CliRunner().invoke(app, ["report", *map(str, three_runs), "-o", str(tmp_path / "report.html")])
    assert res.exit_code == 0, res.output
    shots = Path(os.environ.get("REACTLAB_ARTIFACTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=browser_path, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.route("**/*", lambda route: route.abort() if not route.request.url.startswith("file:") else route.continue_())
        page.goto((tmp_path / "report.html").as_uri())
        page.wait_for_selector("body[data-ready='1']")
        assert page.inner_text("#count") == f"{3 * N} of {3 * N} episodes"
        assert page.locator("table.summary").first.inner_text().count("\n") >= 3  # a header + 3 runs

        page.select_option("#f-run", label="searcher")
        assert page.inner_text("#count") == f"{N} of {3 * N} episodes"
        page.select_option("#f-correct", "1")
        assert page.inner_text("#count") == f"0 of {3 * N} episodes"  # the searcher never finished
        page.select_option("#f-run", "")
        page.select_option("#f-status", "max_steps")
        page.select_option("#f-correct", "")
        assert page.inner_text("#count") == f"{N} of {3 * N} episodes"
        page.select_option("#f-status", "")

        question = json.loads((three_runs[0] / "trajectories.jsonl").read_text().splitlines()[0])
        page.fill("#f-text", question["question"][:30].lower())
        page.wait_for_function("document.getElementById('count').textContent.startsWith('3 of')")
        page.click("#list tbody tr >> nth=0")
        episode = page.locator("#episode")
        assert episode.locator(".question").inner_text() == question["question"]
        assert episode.locator("p.gold mark.gold").inner_text() == question["gold"]
        assert episode.locator(".cols .col").count() == 3  # the question in every run, side by side
        cols = episode.locator(".cols .col")
        assert "correct" in cols.nth(0).locator("h4").inner_text()
        searcher = cols.nth(2).inner_text()
        assert "Action 1: Search[Brassia]" in searcher and "max_steps" in searcher
        assert episode.locator("details.sfl li").count() >= 2  # the supporting facts
        assert episode.locator(".ob mark.sf").count() >= 1  # highlighted in what the oracle read
        assert page.url.endswith("#q=" + question["id"])
        page.locator("#viewer").screenshot(path=str(shots / "report-viewer.png"))
        browser.close()
    assert not errors, errors
    assert (shots / "report-viewer.png").stat().st_size > 10_000


HOSTILE = [
    "</script><script>window.__pwned = 1</script>",
    "<!--<script>",
    '"><img src=x onerror="window.__pwned = 2">',
    "<svg onload=window.__pwned=3>",
    "x\u2028y\u2029z &amp; &lt;b&gt; ]]> ${window.__pwned = 4} `",
    "<style>body{display:none}</style>",
]


def _hostile(value, k):
    """Every string in a record replaced by a hostile one (ids kept distinct)."""
    if isinstance(value, str):
        return HOSTILE[k % len(HOSTILE)]
    if isinstance(value, list):
        return [_hostile(v, k + i) for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {key: _hostile(v, k + i) for i, (key, v) in enumerate(value.items())}
    return value


def test_data_cannot_script_the_page_in_headless_chromium(three_runs, tmp_path):
    """Hostile text in every string of every record, in the run's spec, its label and the title:
    the page renders every record as text and no script of the data runs."""
    browser_path = chromium()
    if browser_path is None:
        if os.environ.get("CI"):
            pytest.fail("no chromium on this CI machine: .ci/run installs Debian's chromium package")
        pytest.skip("no chromium here (apt install chromium, or set REACTLAB_CHROMIUM); CI runs this test")
    from playwright.sync_api import sync_playwright

    run = tmp_path / "hostile"
    shutil.copytree(three_runs[2], run)
    recs = [json.loads(x) for x in (run / "trajectories.jsonl").read_text().splitlines()]
    recs = [{**_hostile(r, i), "id": f"{HOSTILE[i % len(HOSTILE)]}#{i}", "scores": {"em": 0.0}} for i, r in enumerate(recs)]
    (run / "trajectories.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    (run / "summary.json").unlink()
    spec = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**spec, "model": HOSTILE[0], "method": HOSTILE[2]}))
    out = tmp_path / "report.html"
    res = CliRunner().invoke(app, ["report", str(three_runs[0]), str(run), "-o", str(out),
                                   "--label", HOSTILE[3], "--label", HOSTILE[0], "--title", HOSTILE[1]])
    assert res.exit_code == 0, res.output
    html = out.read_text()
    data = html[html.index('<script id="data" type="application/json">'):].split(">", 1)[1].split("</script>")[0]
    assert not any(c in data for c in "<>&\u2028\u2029")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=browser_path, args=["--no-sandbox"])
        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("dialog", lambda d: (errors.append(f"dialog {d.message}"), d.dismiss()))
        page.route("**/*", lambda route: route.abort() if not route.request.url.startswith("file:") else route.continue_())
        page.goto(out.as_uri())
        page.wait_for_selector("body[data-ready='1']")
        assert page.inner_text("#count") == f"{2 * N} of {2 * N} episodes"
        assert page.title() == HOSTILE[1]
        page.select_option("#f-run", "1")
        for i in range(N):
            page.click(f"#list tbody tr >> nth={i}")
            episode = page.locator("#episode")
            assert episode.locator(".question").text_content() == recs[i]["question"]
            assert episode.locator("p.gold code").text_content() == recs[i]["id"]
        assert page.locator("img, style:not(head style), svg[onload]").count() == 0
        assert page.evaluate("window.__pwned") is None
        browser.close()
    assert not errors, errors
