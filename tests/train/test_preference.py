"""DPO and KTO on a tiny random Llama, from rows built by ``reactlab.data.preference`` (the
``data build --format dpo|kto`` layout): the loss falls on a separable toy set, the outputs and
``training.json`` are SFT's, resume is exact, the reference model is the starting policy (base or
SFT adapter), and bad recipes fail early with the key named."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from reactlab.train.recipes import DPORecipe, KTORecipe

pytest.importorskip("trl")

RIGHT, WRONG = "Paris", "Berlin"


def samples(n: int) -> list:
    """For each of ``n`` questions, a correct run (search, then ``finish[Paris]``) and a wrong one
    (the same search, then ``finish[Berlin]``): separable by the final answer alone."""
    from reactlab.data.sources import Sample
    from reactlab.types import Action, Step, Trajectory

    def run(i: int, answer: str) -> Sample:
        steps = [Step(1, f"I need to search country {i}.", Action("search", f"country {i}"), f"Country {i} is in Europe."),
                 Step(2, "So it is this one.", Action("finish", answer), "Episode finished.")]
        return Sample(Trajectory(str(i), "hotpotqa", f"What is the capital of country number {i}?", RIGHT, "react",
                                 "chat", "test", steps=steps, answer=answer), "test", f"t:{i}")

    return [run(i, a) for i in range(n) for a in (RIGHT, WRONG)]


def write(d: Path, rows: list[dict], n_val: int) -> str:
    d.mkdir(parents=True, exist_ok=True)
    (d / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[n_val:]))
    (d / "val.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:n_val]))
    return str(d)


@pytest.fixture(scope="session")
def dpo_data(tmp_path_factory) -> str:
    """16 train + 4 val DPO rows from ``dpo_rows`` (one pair per question)."""
    from reactlab.data.preference import dpo_rows

    rows, dropped = dpo_rows(samples(20))
    assert len(rows) == 20 and not dropped
    assert rows[0]["chosen"][-1]["content"].endswith(f"finish[{RIGHT}]")
    return write(tmp_path_factory.mktemp("dpo-data"), rows, 4)


@pytest.fixture(scope="session")
def kto_data(tmp_path_factory) -> str:
    """32 train + 8 val KTO rows from ``kto_rows``: alternately label true (Paris) and false (Berlin)."""
    from reactlab.data.preference import kto_rows

    rows, _ = kto_rows(samples(20))
    assert [r["label"] for r in rows[:4]] == [True, False, True, False]
    return write(tmp_path_factory.mktemp("kto-data"), rows, 8)


FAST = dict(max_steps=4, per_device_train_batch_size=4, per_device_eval_batch_size=4, logging_steps=1,
            learning_rate=1e-2, save_strategy="no", report_to=[], seed=0, disable_tqdm=True)


# beta 1: the tiny model's tied embeddings (std 0.02, untouched by LoRA) bound the logit gap a LoRA
# can open between two answer tokens to a few nats; with TRL's beta 0.1 the DPO loss would stall
# near 0.45 (measured), so the toy set would not show whether the optimisation works.
def dpo_recipe(model: str, data: str, out: Path, adapter: str | None = None, **trl) -> DPORecipe:
    return DPORecipe(model={"name": model, "adapter": adapter}, data={"path": data}, out=str(out),
                     lora={"r": 8, "alpha": 16}, beta=1.0, trl=FAST | trl)


def kto_recipe(model: str, data: str, out: Path, **trl) -> KTORecipe:
    return KTORecipe(model=model, data={"path": data}, out=str(out), lora={"r": 8, "alpha": 16}, beta=1.0,
                     trl=FAST | trl)


def callback(**hooks):
    from transformers import TrainerCallback

    return type("Hooks", (TrainerCallback,), hooks)()


def recorder(log: dict[int, dict]):
    """A callback that keeps every train log (loss, rewards...) by step."""

    def on_log(self, args, state, control, logs=None, **kw):
        if logs and "loss" in logs:
            log[state.global_step] = dict(logs)

    return callback(on_log=on_log)


def adapter_weights(out: str | Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(Path(out) / "adapter_model.safetensors"))


# --- DPO -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dpo_run(tiny_dir, dpo_data, tmp_path_factory):
    """One 8-step DPO LoRA run with TensorBoard and evals, shared by the checks on its outputs."""
    from reactlab.train.dpo import train_dpo

    out = tmp_path_factory.mktemp("dpo") / "out"
    log: dict[int, dict] = {}
    cfg = dpo_recipe(tiny_dir, dpo_data, out, max_steps=8, report_to=["tensorboard"], eval_strategy="steps",
                     eval_steps=4)
    return cfg, train_dpo(cfg, callbacks=[recorder(log)]), log


def test_dpo_loss_falls_on_a_separable_set(dpo_run):
    cfg, result, log = dpo_run
    assert sorted(log) == list(range(1, 9))
    first, last = log[1]["loss"], log[8]["loss"]
    # Step 1: the new adapter is zero, the policy is its reference: loss ln 2, no margin.
    assert first == pytest.approx(math.log(2), abs=1e-3) and log[1]["rewards/margins"] == pytest.approx(0, abs=1e-3)
    assert last < first - 0.3, {s: round(h["loss"], 3) for s, h in log.items()}
    assert log[8]["rewards/accuracies"] == 1.0 and log[8]["rewards/margins"] > 1
    assert result.train_loss == pytest.approx(last) and result.eval_loss is not None and result.steps == 8


def test_dpo_outputs_and_training_record(dpo_run, dpo_data):
    cfg, result, _ = dpo_run
    out = Path(cfg.out)
    for f in ("adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "loss.png", "training.json",
              "README.md"):
        assert (out / f).is_file(), f
    assert list(out.joinpath("runs").rglob("events.out.tfevents.*")), "no TensorBoard event file"
    info = json.loads((out / "training.json").read_text())
    assert info["trainer"] == "dpo" and info["base_model"] == cfg.model.name and info["method"] == "lora"
    assert info["data"]["files"] == [f"{dpo_data}/train.jsonl", f"{dpo_data}/val.jsonl"]
    assert info["prompt_ids"] == {"chat@1/react": 20}
    assert info["recipe"]["beta"] == 1.0 and info["recipe"]["trl"]["max_steps"] == 8
    assert info["result"]["extra"]["train_rows"] == 16 and info["result"]["extra"]["val_rows"] == 4
    assert "eval_rewards/accuracies" in info["result"]["extra"]["eval_metrics"]
    assert result.train_tokens > 0 and result.tokens_per_s and result.peak_mem_mb > 0
    assert "reactlab train dpo" in (out / "README.md").read_text()
    assert json.loads((out / "adapter_config.json").read_text())["r"] == 8


def test_dpo_resume_matches_uninterrupted_run(tiny_dir, dpo_data, tmp_path):
    from reactlab.train.dpo import train_dpo

    kw = dict(max_steps=4, save_strategy="steps", save_steps=2)
    train_dpo(dpo_recipe(tiny_dir, dpo_data, tmp_path / "a", **kw))

    def stop_at_2(self, args, state, control, **k):
        if state.global_step == 2:
            control.should_training_stop = True  # an interruption right after checkpoint-2 is written

    cfg = dpo_recipe(tiny_dir, dpo_data, tmp_path / "b", **kw)
    assert train_dpo(cfg, callbacks=[callback(on_step_end=stop_at_2)]).steps == 2
    result = train_dpo(cfg, resume=True)
    assert result.steps == 4 and result.extra["resumed"]
    full, resumed = adapter_weights(tmp_path / "a"), adapter_weights(tmp_path / "b")
    assert full.keys() == resumed.keys() and full
    for k in full:
        assert (full[k] - resumed[k]).abs().max().item() < 1e-5, k
    assert any(v.abs().max() > 0 for k, v in full.items() if "lora_B" in k)  # it trained


@pytest.fixture(scope="module")
def sft_adapter(tiny_dir, tmp_path_factory) -> str:
    """A stand-in SFT adapter (r=4) with random non-zero weights, so the SFT model differs from the base."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    model = AutoModelForCausalLM.from_pretrained(tiny_dir)
    peft = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False))
    out = tmp_path_factory.mktemp("sft-adapter")
    peft.save_pretrained(out)
    return str(out)


def test_dpo_from_an_sft_adapter_uses_it_as_the_reference(tiny_dir, dpo_data, sft_adapter, tmp_path):
    """Starting from an SFT adapter, the reference is that adapter (step 1: policy == reference, loss
    ln 2 exactly; the bare base as reference would give a margin), training continues it, and the
    result is one adapter of the SFT adapter's shape, without TRL's frozen ``ref`` copy. Resume (its
    checkpoints hold the ``ref`` adapter too) equals the uninterrupted run."""
    from reactlab.train.dpo import train_dpo

    log: dict[int, dict] = {}
    cfg = dpo_recipe(tiny_dir, dpo_data, tmp_path / "out", adapter=sft_adapter)
    train_dpo(cfg, callbacks=[recorder(log)])
    assert log[1]["loss"] == pytest.approx(math.log(2), abs=1e-4)
    assert log[1]["rewards/chosen"] == pytest.approx(0, abs=1e-4)
    assert log[4]["loss"] < log[1]["loss"]
    out = Path(cfg.out)
    assert json.loads((out / "adapter_config.json").read_text())["r"] == 4  # the SFT adapter's shape
    assert not (out / "ref").exists()
    start, end = adapter_weights(sft_adapter), adapter_weights(out)
    assert start.keys() == end.keys()
    assert max((start[k] - end[k]).abs().max().item() for k in start) > 1e-3

    def stop_at_2(self, args, state, control, **k):
        if state.global_step == 2:
            control.should_training_stop = True

    part = dpo_recipe(tiny_dir, dpo_data, tmp_path / "part", adapter=sft_adapter, save_strategy="steps", save_steps=2)
    train_dpo(part, callbacks=[callback(on_step_end=stop_at_2)])
    assert train_dpo(part, resume=True).steps == 4
    resumed = adapter_weights(part.out)
    assert max((end[k] - resumed[k]).abs().max().item() for k in end) < 1e-5


def test_dpo_full_fine_tuning(tiny_dir, dpo_data, tmp_path):
    from reactlab.train.dpo import train_dpo

    log: dict[int, dict] = {}
    cfg = dpo_recipe(tiny_dir, dpo_data, tmp_path / "out", max_steps=2, learning_rate=1e-3).model_copy(
        update={"method": "full"})
    train_dpo(cfg, callbacks=[recorder(log)])
    assert log[1]["loss"] == pytest.approx(math.log(2), abs=1e-4)  # the reference is the starting model
    assert (Path(cfg.out) / "model.safetensors").is_file() and not (Path(cfg.out) / "adapter_config.json").exists()


# --- KTO -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def kto_run(tiny_dir, kto_data, tmp_path_factory):
    from reactlab.train.kto import train_kto

    out = tmp_path_factory.mktemp("kto") / "out"
    log: dict[int, dict] = {}
    cfg = kto_recipe(tiny_dir, kto_data, out, max_steps=8, report_to=["tensorboard"])
    return cfg, train_kto(cfg, callbacks=[recorder(log)]), log


def test_kto_loss_falls_on_a_separable_set(kto_run):
    cfg, result, log = kto_run
    assert sorted(log) == list(range(1, 9))
    first, last = log[1]["loss"], log[8]["loss"]
    assert first == pytest.approx(0.5, abs=1e-3)  # policy == reference: each row's loss is 1 - sigmoid(0)
    assert last < first - 0.2, {s: round(h["loss"], 3) for s, h in log.items()}
    assert log[8]["rewards/margins"] > 0
    out = Path(cfg.out)
    for f in ("adapter_model.safetensors", "loss.png", "training.json"):
        assert (out / f).is_file(), f
    info = json.loads((out / "training.json").read_text())
    assert info["trainer"] == "kto" and info["result"]["extra"]["labels"] == {"true": 16, "false": 16}
    assert result.eval_loss is not None and list(out.joinpath("runs").rglob("events.out.tfevents.*"))


def test_kto_resume_matches_uninterrupted_run(tiny_dir, kto_data, tmp_path):
    from reactlab.train.kto import train_kto

    kw = dict(max_steps=4, save_strategy="steps", save_steps=2)
    train_kto(kto_recipe(tiny_dir, kto_data, tmp_path / "a", **kw))

    def stop_at_2(self, args, state, control, **k):
        if state.global_step == 2:
            control.should_training_stop = True

    cfg = kto_recipe(tiny_dir, kto_data, tmp_path / "b", **kw)
    assert train_kto(cfg, callbacks=[callback(on_step_end=stop_at_2)]).steps == 2
    assert train_kto(cfg, resume=True).steps == 4
    full, resumed = adapter_weights(tmp_path / "a"), adapter_weights(tmp_path / "b")
    for k in full:
        assert (full[k] - resumed[k]).abs().max().item() < 1e-5, k


def test_kto_balance_labels(tiny_dir, tmp_path):
    from reactlab.train.kto import balanced_weights, kto_config

    assert balanced_weights([True, False, False]) == (1.0, 0.5)
    with pytest.raises(ValueError, match="needs both"):
        balanced_weights([False, False])
    cfg = kto_recipe(tiny_dir, str(tmp_path), tmp_path / "o").model_copy(update={"balance_labels": True})
    args = kto_config(cfg, labels=[True] + [False] * 3)
    assert (args.desirable_weight, args.undesirable_weight) == (1.0, pytest.approx(1 / 3))
    assert args.bf16 is False and args.activation_checkpointing is False and args.beta == 1.0


def test_recipe_trl_keys_win_over_our_cpu_defaults(tmp_path):
    from reactlab.train.dpo import dpo_config

    ours = dpo_config(dpo_recipe("m", str(tmp_path), tmp_path / "o"))
    assert (ours.activation_checkpointing, ours.bf16, ours.output_dir) == (False, False, str(tmp_path / "o"))
    assert ours.report_to == [] and ours.beta == 1.0  # FAST sets report_to: []
    theirs = dpo_config(dpo_recipe("m", str(tmp_path), tmp_path / "o", gradient_checkpointing=True,
                                   report_to=["tensorboard"]))
    assert theirs.activation_checkpointing is True and theirs.report_to == ["tensorboard"]


# --- bad recipes, data and the CLI ---------------------------------------------------------------


def test_bad_recipes_fail_before_loading_the_model(dpo_data, kto_data, tmp_path):
    """A missing model would fail at load: these must fail first, naming the key."""
    from reactlab.train.dpo import train_dpo
    from reactlab.train.kto import train_kto

    with pytest.raises(ValueError, match=r"trl.bta \(did you mean beta"):
        train_dpo(dpo_recipe("no/such-model", dpo_data, tmp_path / "o", bta=0.2))
    with pytest.raises(ValueError, match=r"trl.beta: .*recipe's own key"):
        train_dpo(dpo_recipe("no/such-model", dpo_data, tmp_path / "o", beta=0.2))
    with pytest.raises(ValueError, match=r"trl.per_device_train_batch_size: KTO needs at least 2"):
        train_kto(kto_recipe("no/such-model", kto_data, tmp_path / "o", per_device_train_batch_size=1))
    with pytest.raises(ValueError, match=r"trl.desirable_weight"):
        train_kto(kto_recipe("no/such-model", kto_data, tmp_path / "o", desirable_weight=2.0))
    with pytest.raises(ValueError, match="no checkpoint"):
        train_dpo(dpo_recipe("no/such-model", dpo_data, tmp_path / "none"), resume=True)


def test_rows_of_the_wrong_format_name_the_row(tmp_path):
    from reactlab.io import DataError
    from reactlab.train.dpo import train_dpo
    from reactlab.train.kto import train_kto

    msgs = [{"role": "user", "content": "Q?"}]
    d = write(tmp_path / "d", [{"messages": msgs}], 0)
    with pytest.raises(DataError, match=r"train.jsonl: row 1: no 'prompt', 'chosen', 'rejected' column"):
        train_dpo(dpo_recipe("no/such-model", d, tmp_path / "o"))
    d = write(tmp_path / "k", [{"prompt": msgs, "completion": "text", "label": True}], 0)
    with pytest.raises(DataError, match=r"row 1: 'completion' must be a non-empty chat message list"):
        train_kto(kto_recipe("no/such-model", d, tmp_path / "o"))
    d = write(tmp_path / "l", [{"prompt": "Q", "completion": "A", "label": "yes"}], 0)
    with pytest.raises(DataError, match=r"row 1: 'label' must be true or false"):
        train_kto(kto_recipe("no/such-model", d, tmp_path / "o"))


@pytest.mark.parametrize("method", ["dpo", "kto"])
def test_cli(method, tiny_dir, dpo_data, kto_data, tmp_path):
    from typer.testing import CliRunner

    from reactlab.train.cli import train_app

    data = dpo_data if method == "dpo" else kto_data
    recipe_file = tmp_path / "r.yaml"
    recipe_file.write_text(f"model: {tiny_dir}\ndata:\n  path: {data}\n  val_file: null\nlora: {{r: 4}}\n"
                           "trl:\n  max_steps: 2\n  per_device_train_batch_size: 4\n"
                           "  report_to: []\n  save_strategy: 'no'\n  disable_tqdm: true\n")
    out = tmp_path / "out"
    res = CliRunner().invoke(train_app, [method, "-c", str(recipe_file), "-c", f"out={out}", "-c", "lora.r=2",
                                         "-c", "beta=0.2"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout[res.stdout.index('{\n  "out"'):])["steps"] == 2
    assert json.loads((out / "adapter_config.json").read_text())["r"] == 2
    assert json.loads((out / "training.json").read_text())["recipe"]["beta"] == 0.2
    bad = CliRunner().invoke(train_app, [method, "-c", str(recipe_file), "-c", f"out={out}", "-c", "lora.rank=2"])
    assert bad.exit_code == 2 and "lora.rank" in bad.output and "unknown key" in bad.output
    bad = CliRunner().invoke(train_app, [method, "-c", str(recipe_file), "-c", f"out={out}", "-c", "trl.bta=1"])
    assert bad.exit_code == 2 and "error: trl: block: not trl." in bad.output and "trl.bta" in bad.output
