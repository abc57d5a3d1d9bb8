"""``budget train``: baselines fit and save; the packaged LLM recipes are valid for TRL; SFT then
GRPO (single completions under the graded reward) run end to end on a tiny random model through
the existing trainers and leave a loadable predictor."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reactlab.budget.predictors import LLMPredictor, load_predictor
from reactlab.budget.train import LLM_METHODS, default_recipe, train_budget


def test_baseline_training_writes_a_predictor(budget_dir, tmp_path):
    out = train_budget("features", budget_dir, out=str(tmp_path / "f"))
    assert Path(out["predictor"]) == tmp_path / "f" / "predictor.json"
    assert load_predictor(tmp_path / "f").kind == "features"
    with pytest.raises(ValueError, match="needs --out"):
        train_budget("mean", budget_dir)
    with pytest.raises(ValueError, match="unknown budget predictor method 'ppo'"):
        train_budget("ppo", budget_dir, out=str(tmp_path / "p"))


def test_packaged_budget_recipes_validate():
    pytest.importorskip("trl")
    import trl

    from reactlab import config as configs
    from reactlab.train import recipes
    from reactlab.train.args import check_trl_keys

    for method in LLM_METHODS:
        cfg = configs.load_config(getattr(recipes, f"{method.upper()}Recipe"), [default_recipe(method)])
        check_trl_keys(cfg.trl, getattr(trl, f"{method.upper()}Config"))
        if method in ("grpo", "rloo"):
            assert (cfg.multi_turn, cfg.env, cfg.rewards) == (False, "none", {"budget_reward": 1.0})


FAST = ["trl.max_steps=2", "trl.per_device_train_batch_size=4", "trl.save_strategy=no", "trl.report_to=[]",
        "trl.logging_steps=1", "trl.disable_tqdm=true", "lora.r=4", "lora.alpha=8"]


def test_sft_then_grpo_on_a_tiny_model(make_tiny, budget_dir, tmp_path, one_thread):
    pytest.importorskip("trl")
    tiny = make_tiny("llama", init_std=0.02)
    sft = train_budget("sft", budget_dir, [f"model.name={tiny}", "trl.eval_strategy=no", *FAST],
                       out=str(tmp_path / "sft"))
    assert sft["rows"]["train"] > 0 and sft["training"]["steps"] == 2
    assert (tmp_path / "sft" / "training.json").is_file() and (tmp_path / "sft" / "loss.png").is_file()
    p = load_predictor(tmp_path / "sft")
    assert isinstance(p, LLMPredictor) and (p.model, p.adapter) == (tiny, str(tmp_path / "sft"))

    grpo = train_budget("grpo", budget_dir, [f"model.name={tiny}", f"model.adapter={tmp_path / 'sft'}",
                                             "num_generations=4", "max_new_tokens=3", *FAST],
                        out=str(tmp_path / "grpo"))
    record = json.loads((tmp_path / "grpo" / "training.json").read_text())
    assert grpo["training"]["steps"] == 2 and record["result"]["extra"]["rewards"]
    assert (tmp_path / "grpo" / "reward.png").is_file()
    rows = [json.loads(x) for x in (budget_dir / "rows" / "prompts" / "train.jsonl").read_text().splitlines()]
    assert all(isinstance(r["budget"], int) for r in rows)
    from reactlab.budget.labels import load_budget

    val = load_budget(budget_dir).rows["val"][:2]
    preds = load_predictor(tmp_path / "grpo").predict(val)  # the tiny base + the GRPO adapter, through our HF backend
    assert len(preds) == 2 and all(isinstance(x.steps, int) and 0 <= x.bucket <= 4 for x in preds)


@pytest.mark.parametrize("method, keys", [
    ("dpo", ["trl.eval_strategy=no", "trl.max_length=128"]),
    ("kto", ["trl.eval_strategy=no", "trl.max_length=128"]),
    ("rloo", ["num_generations=4", "max_new_tokens=3"]),
])
def test_preference_and_rloo_methods_run_from_the_budget_rows(make_tiny, budget_dir, tmp_path, one_thread, method, keys):
    pytest.importorskip("trl")
    tiny = make_tiny("llama", init_std=0.02)
    out = train_budget(method, budget_dir, [f"model.name={tiny}", *FAST, "trl.max_steps=1", *keys],
                       out=str(tmp_path / method))
    assert out["training"]["steps"] == 1 and load_predictor(tmp_path / method).kind == "llm"
    assert (budget_dir / "rows" / {"rloo": "prompts"}.get(method, method) / "train.jsonl").is_file()
