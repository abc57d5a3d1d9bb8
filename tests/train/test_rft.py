"""`reactlab train rft` on a tiny random Llama, with a scripted sampler whose episodes are correct and
grounded, correct and ungrounded, or wrong: only the first kind becomes rows, no evaluation or
held-out question is ever trained on, a rerun skips every stage (and one with more rounds runs only
the new ones), a changed recipe is refused before anything runs, a bad key is one line and exit 2."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest
from typer.testing import CliRunner

from reactlab.cli import app
from reactlab.config import load_config
from reactlab.data.select import excluded_questions, is_grounded, normalize_question
from reactlab.io import DataError
from reactlab.llm.scripted import ScriptedLLM
from reactlab.tasks.hotpotqa import HotpotQA
from reactlab.train.recipes import RFTRecipe
from reactlab.train.rft import _questions_stage, run_rft
from reactlab.types import Trajectory

from .conftest import react_rows

pytest.importorskip("trl")

FAST = ("trl.max_steps=2", "trl.per_device_train_batch_size=2", "trl.gradient_accumulation_steps=1",
        "trl.per_device_eval_batch_size=4", "trl.logging_steps=1", "trl.save_steps=1", "trl.report_to=[]",
        "trl.disable_tqdm=true", "trl.warmup_steps=0")
QUESTIONS, HELDOUT, K = 30, 3, 2
WRONG = "Nobody In Particular"


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


class Sampler:
    """A question's odd-numbered episodes answer its gold at once (grounded only when the gold is
    yes/no or in the question), its even-numbered ones a wrong answer."""

    def __init__(self) -> None:
        self.gold = {e.question: e.answer for e in HotpotQA().examples("train")}
        self.calls: dict[str, int] = defaultdict(int)

    def __call__(self, prompt) -> str:
        question = next(m["content"] for m in prompt if m["role"] == "user")
        self.calls[question] += 1
        answer = self.gold[question] if self.calls[question] % 2 else WRONG
        return f"Thought: I know this.\nAction: finish[{answer}]"


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_dir):
    """The recipe file (1 round), the original SFT rows (test rows, an eval question and a held-out
    one) and the sampler; the questions stage is run first, to know a held-out question."""
    root = tmp_path_factory.mktemp("rft")
    sft = root / "sft.yaml"
    sft.write_text(f"model: {{name: 'hf:{tiny_dir}'}}\ndata: {{path: {root / 'sft-data'}}}\nlora: {{r: 4, alpha: 8}}\n"
                   f"out: {root / 'unused'}\ntrl: {{{', '.join(x[4:].replace('=', ': ') for x in FAST)}}}\n")
    recipe = root / "rft.yaml"
    recipe.write_text(f"sft: {sft}\nquestions: {QUESTIONS}\nheldout: {HELDOUT}\nk: {K}\ntemperature: 1.0\n"
                      f"max_steps: 2\nbatch_size: 8\nrounds: 1\nout: {root / 'out'}\n")
    cfg = load_config(RFTRecipe, [recipe])
    _questions_stage(cfg, lambda _line: None)
    held = lines(root / "out/questions/heldout.jsonl")[0]["question"]
    evalq = HotpotQA().examples("eval")[0].question
    odd = [{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": "Thought: x\nAction: finish[y]"}],
            "source": "test", "prompt_id": "chat@1/react"} for q in (evalq, held)]
    (root / "sft-data").mkdir()
    rows = react_rows(12)
    (root / "sft-data/train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in [*rows[:10], *odd]))
    (root / "sft-data/val.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[10:]))
    sampler = Sampler()
    return recipe, cfg, sampler, (evalq, held)


@pytest.fixture(scope="module")
def rft(setup, vendored_index):
    _, cfg, sampler, _ = setup
    return run_rft(cfg, index=vendored_index, llm=lambda ref: ScriptedLLM(sampler, name=ref.label()), progress=False)


def test_keeps_only_correct_grounded_episodes(rft, setup):
    _, cfg, _, _ = setup
    out = Path(cfg.out)
    trajs = [Trajectory.from_dict(d) for d in lines(out / "round-1/samples/trajectories.jsonl")]
    assert len(trajs) == QUESTIONS * K and len({t.id for t in trajs}) == QUESTIONS * K
    right = {t.id for t in trajs if t.scores["em"] == 1.0}
    good = {t.id for t in trajs if t.id in right and is_grounded(t)}
    stats = json.loads((out / "round-1/data/stats.json").read_text())
    assert set(stats["kept_ids"]) == good
    # every kind was sampled: correct grounded (kept), correct ungrounded and wrong (dropped)
    assert good and right - good and len(right) < len(trajs)
    assert stats["dropped"] == {"incorrect": len(trajs) - len(right), "ungrounded": len(right - good)}
    start = lines(out / "round-0/data/train.jsonl") + lines(out / "round-0/data/val.jsonl")
    rows = lines(out / "round-1/data/train.jsonl") + lines(out / "round-1/data/val.jsonl")
    added = [r for r in rows if r["source"] == "rft-round-1"]
    assert len(rows) == len(start) + len(added) and len(added) == stats["rows_added"] == len(good)
    assert all(WRONG not in r["messages"][-1]["content"] for r in added)
    (summary,) = [s for s in rft.rounds if s["round"] == 1]
    assert summary == json.loads((out / "round-1/rft.json").read_text())
    assert (summary["episodes"], summary["kept"], summary["questions_kept"]) == (QUESTIONS * K, len(good), len(good))
    assert summary["sampled_from"] == str(out / "round-0/adapter") and summary["heldout"]["n"] == HELDOUT
    assert set(summary["wall_s"]) == {"samples", "data", "train", "heldout", "total"}
    info = json.loads((out / "round-1/adapter/training.json").read_text())
    assert info["recipe"]["data"]["path"] == str(out / "round-1/data") and info["recipe"]["model"]["adapter"] is None
    assert info["result"]["extra"]["train_rows"] == len(lines(out / "round-1/data/train.jsonl"))


def test_no_evaluation_or_heldout_question_is_trained_on(rft, setup):
    _, cfg, _, (evalq, held) = setup
    out = Path(cfg.out)
    pool, heldout = (lines(out / f"questions/{f}.jsonl") for f in ("pool", "heldout"))
    asked = {normalize_question(r["question"]) for r in pool}
    held_out = {normalize_question(r["question"]) for r in heldout}
    assert (len(asked), len(held_out)) == (QUESTIONS, HELDOUT) and not asked & held_out
    assert not (asked | held_out) & excluded_questions()  # the train pool holds paper500 questions: dropped
    assert not {normalize_question(t["question"]) for t in lines(out / "round-1/samples/trajectories.jsonl")} - asked
    assert json.loads((out / "round-0/data/stats.json").read_text())["dropped"] == {"eval_overlap": 1, "heldout": 1}
    for r in (0, 1):
        rows = lines(out / f"round-{r}/data/train.jsonl") + lines(out / f"round-{r}/data/val.jsonl")
        trained = {normalize_question(next(m["content"] for m in x["messages"] if m["role"] == "user")) for x in rows}
        assert not trained & (excluded_questions() | held_out)
        assert normalize_question(evalq) not in trained and normalize_question(held) not in trained


def test_a_rerun_skips_every_stage_and_more_rounds_run_only_the_new_ones(rft, setup, vendored_index):
    recipe, cfg, sampler, _ = setup
    out = Path(cfg.out)
    watched = sorted(p for p in out.rglob("*") if p.is_file() and "checkpoint-" not in str(p) and p.name != "rft.json"
                     and p.name != "recipe.json")
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in watched}
    scripted = lambda ref: ScriptedLLM(sampler, name=ref.label())  # noqa: E731
    again = run_rft(cfg, index=vendored_index, llm=scripted, progress=False)
    assert set(again.stages.values()) == {"skipped"} and len(again.stages) == len(rft.stages) == 7
    assert again.rounds == rft.rounds
    more = run_rft(cfg.model_copy(update={"rounds": 2}), index=vendored_index, llm=scripted, progress=False)
    assert {k: v for k, v in more.stages.items() if v != "skipped"} == {
        f"round-2/{s}": "ran" for s in ("samples", "data", "adapter", "heldout")}
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in watched} == before  # round 1 untouched
    assert more.rounds[2]["sampled_from"] == str(out / "round-1/adapter")
    assert [r["round"] for r in json.loads((out / "rft.json").read_text())["rounds"]] == [0, 1, 2]
    # the CLI on the finished dir: nothing runs, the rounds are printed
    res = CliRunner().invoke(app, ["train", "rft", "-c", str(recipe), "-c", "rounds=2", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout[res.stdout.index("["):]) == more.rounds


def test_changed_options_are_refused_before_anything_runs(rft, setup):
    _, cfg, _, _ = setup
    with pytest.raises(DataError, match=r"was made from other inputs \(recipe.k: 2 there vs 3 now\)"):
        run_rft(cfg.model_copy(update={"k": 3}), progress=False)
    with pytest.raises(DataError, match=r"recipe.sft_overrides: \[\] there vs \['lora.r=8'\] now"):
        run_rft(cfg.model_copy(update={"sft_overrides": ["lora.r=8"]}), progress=False)


def test_output_after_an_incomplete_stage_is_refused(rft, setup):
    """A removed adapter would be trained anew; the held-out episodes of the old one must not be reused."""
    _, cfg, _, _ = setup
    record = Path(cfg.out) / "round-0/adapter/training.json"
    record.rename(record.with_suffix(".bak"))
    try:
        with pytest.raises(DataError, match=r"round-0/heldout: was made from an earlier .*round-0/adapter, which is "
                                            r"incomplete now; remove .*round-0/heldout"):
            run_rft(cfg, progress=False)
    finally:
        record.with_suffix(".bak").rename(record)


@pytest.mark.parametrize(("override", "message"), [
    ("bogus=1", "bogus: unknown key"),
    ("k=0", "k: Input should be greater than or equal to 1"),
    ("sft_overrides=[out=/x]", "RFT sets out itself"),
    ("questions=100000", "the HotpotQA train pool has"),
])
def test_a_bad_recipe_is_one_line_and_exit_2(override, message, setup, tmp_path):
    recipe, _, _, _ = setup
    res = CliRunner().invoke(app, ["train", "rft", "-c", str(recipe), "-c", override, "--out", str(tmp_path / "o")])
    assert res.exit_code == 2, res.output
    assert message in res.stderr and res.stderr.strip().count("\n") == 0 and "Traceback" not in res.output
    assert not (tmp_path / "o").exists()


def test_previous_init_continues_the_last_adapter(setup):
    from reactlab.train.rft import _round_recipe, check

    _, cfg, _, _ = setup
    sft = check(cfg)
    assert _round_recipe(cfg, sft, 2, Path("A1")).model.adapter is None
    cont = cfg.model_copy(update={"init": "previous"})
    assert _round_recipe(cont, sft, 2, Path("A1")).model.adapter == "A1"
    assert _round_recipe(cont, sft, 2, Path("A1")).out == str(Path(cfg.out) / "round-2/adapter")


@pytest.mark.slow
def test_a_round_samples_from_the_tiny_model_itself(setup, vendored_index, tmp_path):
    """No scripted sampler: the k episodes of a question are the adapter's own, sampled with distinct seeds."""
    _, cfg, _, _ = setup
    small = cfg.model_copy(update={"questions": 2, "heldout": 0, "out": str(tmp_path / "out")})
    res = run_rft(small, index=vendored_index, progress=False)
    assert res.stages == dict.fromkeys(("round-0/data", "round-0/adapter", "round-1/samples", "round-1/data",
                                        "round-1/adapter"), "ran")
    trajs = lines(tmp_path / "out/round-1/samples/trajectories.jsonl")
    assert len(trajs) == 2 * K and all(t["model"].endswith(f"+{tmp_path / 'out/round-0/adapter'}") for t in trajs)
    by_q = defaultdict(list)
    for t in trajs:
        by_q[t["question"]].append(json.dumps(t["steps"]))
    assert any(len(set(v)) > 1 for v in by_q.values())  # sampled, not k copies of one greedy episode
    assert (tmp_path / "out/round-1/adapter/adapter_model.safetensors").is_file()


def test_the_shipped_recipe_loads_with_its_sft_recipe():
    from reactlab.config import find_recipe
    from reactlab.train.recipes import SFTRecipe

    cfg = load_config(RFTRecipe, [find_recipe("rft_smollm2_lora")])
    assert cfg.grounded and cfg.init == "base" and cfg.k > 1 and cfg.heldout > 0
    assert load_config(SFTRecipe, [find_recipe(cfg.sft)], cfg.sft_overrides).method == "lora"
