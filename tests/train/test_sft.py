"""SFT on a tiny random Llama: the loss falls, the model sees exactly the masked labels, resume is
exact, QLoRA on a CPU fails early, and the adapter loads in the inference backend."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from reactlab.train.recipes import SFTRecipe

pytest.importorskip("trl")


def recipe(model: str, data: str, out: Path, **trl) -> SFTRecipe:
    """A fast recipe: batches of 4, a log per step, no checkpoints unless asked, no TensorBoard."""
    base = dict(max_steps=4, per_device_train_batch_size=4, per_device_eval_batch_size=4, logging_steps=1,
                learning_rate=1e-2, activation_checkpointing=False, save_strategy="no", report_to=[],
                seed=0, disable_tqdm=True)
    return SFTRecipe(model=model, data={"path": data}, out=str(out), lora={"r": 8, "alpha": 16}, trl=base | trl)


def callback(**hooks):
    """A ``TrainerCallback`` whose methods are the given functions."""
    from transformers import TrainerCallback

    return type("Hooks", (TrainerCallback,), hooks)()


def losses(history) -> dict[int, float]:
    return {h["step"]: h["loss"] for h in history if "loss" in h}


@pytest.fixture(scope="module")
def trained(tiny_dir, react_data, tmp_path_factory):
    """One 12-step LoRA run (with TensorBoard and an eval), shared by the checks on its outputs."""
    from reactlab.train.sft import train_sft

    out = tmp_path_factory.mktemp("sft") / "out"
    cfg = recipe(tiny_dir, react_data, out, max_steps=12, report_to=["tensorboard"],
                 eval_strategy="steps", eval_steps=6)
    return cfg, train_sft(cfg)


def test_loss_falls(trained):
    cfg, result = trained
    info = json.loads((Path(cfg.out) / "training.json").read_text())
    curve = losses(_log_history(cfg.out))
    assert len(curve) == 12
    assert curve[12] < curve[1] - 0.5, curve
    assert result.eval_loss is not None and result.train_loss == curve[12]
    assert info["result"]["steps"] == 12


def _log_history(out: str) -> list[dict]:
    """The train losses as written to TensorBoard (so this also checks that the logs exist)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    runs = list(Path(out, "runs").rglob("events.out.tfevents.*"))
    assert runs, "no TensorBoard event file"
    acc = EventAccumulator(str(runs[0].parent))
    acc.Reload()
    return [{"step": e.step, "loss": e.value} for e in acc.Scalars("train/loss")]


def test_outputs_and_training_record(trained, react_data):
    cfg, result = trained
    out = Path(cfg.out)
    for f in ("adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "loss.png", "training.json"):
        assert (out / f).is_file(), f
    info = json.loads((out / "training.json").read_text())
    assert info["base_model"] == cfg.model.name and info["method"] == "lora"
    assert len(info["data"]["sha256"]) == 64 and info["data"]["files"][0].endswith("train.jsonl")
    assert info["prompt_ids"] == {"messages:test@1": 20}
    assert info["recipe"]["lora"]["r"] == 8 and info["recipe"]["trl"]["max_steps"] == 12
    assert info["result"]["tokens_per_s"] > 0 and info["result"]["peak_mem_mb"] > 0
    assert result.train_tokens > 0 and result.wall_s > 0
    assert [h["step"] for h in info["result"]["extra"]["log_history"] if "loss" in h] == list(range(1, 13))
    card = (out / "README.md").read_text()  # the model card names the base model (PEFT's named a temp dir)
    assert card.startswith(f"---\nbase_model: {cfg.model.name}\nlibrary_name: peft\n")
    assert f"base_model:adapter:{cfg.model.name}" in card and "train_loss" in card
    assert f"reactlab run --model {cfg.model.name} --adapter {out}" in card


def test_adapter_loads_and_changes_outputs(trained, tiny_dir):
    import torch

    from reactlab.llm.hf import HFLLM
    from reactlab.types import GenParams

    cfg, _ = trained
    base, tuned = HFLLM(tiny_dir, batch_size=2), HFLLM(tiny_dir, adapter=cfg.out, batch_size=2)
    prompt = [{"role": "user", "content": "What is the capital of country number 3?"}]
    ids = torch.tensor([base.encode(prompt)])
    with torch.no_grad():
        a, b = base.model(ids).logits, tuned.model(ids).logits
    assert not torch.allclose(a, b, atol=1e-3)
    # The adapter learned the dataset's first step: its greedy answer starts like a ReAct turn.
    text = tuned.generate([prompt], GenParams(max_new_tokens=8))[0].text
    assert text != base.generate([prompt], GenParams(max_new_tokens=8))[0].text


def test_sft_continues_a_model_adapter(trained, tiny_dir, react_data, tmp_path):
    """``model.adapter``: SFT trains that adapter on (its own shape, not the recipe's ``lora``)."""
    from safetensors.torch import load_file

    from reactlab.train.sft import train_sft

    start, _ = trained
    cfg = recipe(tiny_dir, react_data, tmp_path / "more", max_steps=2)
    cfg.model.adapter, cfg.lora.r = start.out, 4
    train_sft(cfg)
    assert json.loads((Path(cfg.out) / "adapter_config.json").read_text())["r"] == 8
    before, after = (load_file(str(Path(d) / "adapter_model.safetensors")) for d in (start.out, cfg.out))
    assert before.keys() == after.keys()
    assert max((before[k] - after[k]).abs().max().item() for k in before) > 1e-4


def _capture(batches: list):
    """A callback that records the inputs the trained model's forward receives (training only)."""

    def on_train_begin(self, args, state, control, model=None, **kw):
        def hook(module, a, kwargs):
            if module.training:
                batches.append({k: v.clone() for k, v in kwargs.items() if hasattr(v, "clone")})

        model.register_forward_pre_hook(hook, with_kwargs=True)

    return callback(on_train_begin=on_train_begin)


def _expected(tiny_dir, data, n=16):
    from transformers import AutoTokenizer

    from reactlab.data.masking import mask_conversation

    tok = AutoTokenizer.from_pretrained(tiny_dir)
    rows = [json.loads(x) for x in Path(data, "train.jsonl").read_text().splitlines()][:n]
    return sorted((tuple(e["input_ids"]), tuple(e["labels"]))
                  for e in (mask_conversation(tok, r["messages"], "assistant") for r in rows))


@pytest.mark.parametrize("padding_free", [False, True])
def test_model_receives_exactly_the_masked_labels(tiny_dir, react_data, tmp_path, padding_free):
    """One epoch (4 batches of 4): every row reaches the model once, with ``mask_conversation``'s
    labels, padded only to its batch's longest row (or not at all: padding-free)."""
    from reactlab.train.sft import train_sft

    batches: list[dict] = []
    extra = {"padding_free": True, "max_length": None} if padding_free else {}
    train_sft(recipe(tiny_dir, react_data, tmp_path / "out", **extra), callbacks=[_capture(batches)])
    assert len(batches) == 4
    seen = []
    for b in batches:
        ids, labels = b["input_ids"], b["labels"]
        if padding_free:
            assert ids.shape[0] == 1 and "attention_mask" not in b
            starts = (b["position_ids"][0] == 0).nonzero().flatten().tolist() + [ids.shape[1]]
            rows = [(ids[0, s:e], labels[0, s:e]) for s, e in zip(starts, starts[1:], strict=False)]
        else:
            mask = b["attention_mask"]
            assert mask[:, -1].any(), "padded past the batch's longest row"
            rows = [(ids[i][mask[i] == 1], labels[i][mask[i] == 1]) for i in range(ids.shape[0])]
            assert all((labels[i][mask[i] == 0] == -100).all() for i in range(ids.shape[0]))
        seen += [(tuple(i.tolist()), tuple(lab.tolist())) for i, lab in rows]
    assert sorted(seen) == _expected(tiny_dir, react_data)


def test_resume_matches_uninterrupted_run(tiny_dir, react_data, tmp_path):
    from reactlab.train.sft import train_sft

    def recorder(log):
        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "loss" in logs:
                log[state.global_step] = logs["loss"]

        return callback(on_log=on_log)

    kw = dict(max_steps=6, save_strategy="steps", save_steps=3)
    full: dict[int, float] = {}
    train_sft(recipe(tiny_dir, react_data, tmp_path / "a", **kw), callbacks=[recorder(full)])

    def stop_at_3(self, args, state, control, **k):
        if state.global_step == 3:
            control.should_training_stop = True  # an interruption right after checkpoint-3 is written

    part: dict[int, float] = {}
    cfg = recipe(tiny_dir, react_data, tmp_path / "b", **kw)
    train_sft(cfg, callbacks=[callback(on_step_end=stop_at_3), recorder(part)])
    assert sorted(part) == [1, 2, 3] and (tmp_path / "b" / "checkpoint-3").is_dir()
    resumed: dict[int, float] = {}
    result = train_sft(cfg, resume=True, callbacks=[recorder(resumed)])
    assert sorted(resumed) == [4, 5, 6] and result.steps == 6
    for step in (4, 5, 6):
        assert resumed[step] == pytest.approx(full[step], rel=1e-4), (step, resumed, full)


def test_resume_without_checkpoint_fails(tiny_dir, react_data, tmp_path):
    from reactlab.train.sft import train_sft

    with pytest.raises(ValueError, match="no checkpoint"):
        train_sft(recipe(tiny_dir, react_data, tmp_path / "none"), resume=True)


def test_an_empty_val_file_turns_evaluation_off(tiny_dir, react_data, tmp_path):
    """A recipe that evaluates every N steps still trains on a dataset whose val file is empty (a
    small `data build` can send no question to val): there is just no eval loss."""
    from reactlab.train.sft import train_sft

    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(Path(react_data) / "train.jsonl", data / "train.jsonl")
    (data / "val.jsonl").write_text("")
    result = train_sft(recipe(tiny_dir, str(data), tmp_path / "out", max_steps=2, eval_strategy="steps", eval_steps=1))
    assert result.steps == 2 and result.eval_loss is None


def test_max_minutes_ends_training_after_the_update_that_crosses_it(tiny_dir, react_data, tmp_path):
    """A wall-time budget (``max_minutes``): a tiny budget stops the run after its first update,
    which is then saved and recorded like any end; without it the run goes to ``max_steps``."""
    from reactlab.train.sft import train_sft

    cfg = recipe(tiny_dir, react_data, tmp_path / "out", max_steps=5)
    cfg.max_minutes = 1e-6
    result = train_sft(cfg)
    record = json.loads((tmp_path / "out" / "training.json").read_text())
    assert result.steps == 1 and (tmp_path / "out" / "adapter_model.safetensors").is_file()
    assert record["result"]["extra"]["stopped_by_time"] is True
    cfg = recipe(tiny_dir, react_data, tmp_path / "out2", max_steps=3)
    cfg.max_minutes = 60
    result = train_sft(cfg)
    assert result.steps == 3 and result.extra["stopped_by_time"] is False


def test_a_step_evaluated_in_training_is_not_evaluated_again(tiny_dir, react_data, tmp_path):
    from reactlab.train.sft import train_sft

    evals = []
    counter = callback(on_evaluate=lambda self, args, state, control, **kw: evals.append(state.global_step))
    for name, every in (("aligned", 2), ("not-aligned", 3)):
        evals.clear()
        cfg = recipe(tiny_dir, react_data, tmp_path / name, max_steps=4, eval_strategy="steps", eval_steps=every)
        result = train_sft(cfg, callbacks=[counter])
        assert evals == ([2, 4] if every == 2 else [3, 4])  # the final eval runs only when step 4 had none
        assert result.eval_loss is not None


def test_qlora_on_cpu_fails_early(react_data, tmp_path):
    import torch

    from reactlab.train.sft import train_sft

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    cfg = recipe("no/such-model", react_data, tmp_path / "q").model_copy(update={"method": "qlora"})
    with pytest.raises(ValueError, match=r"qlora.*(CUDA|GPU)(.|\n)*method=lora"):
        train_sft(cfg)  # fails before touching the (missing) model


def test_completion_rows_use_mask_completion(tiny_dir):
    from transformers import AutoTokenizer

    from reactlab.data.masking import mask_completion
    from reactlab.train.sft import tokenize_row

    tok = AutoTokenizer.from_pretrained(tiny_dir)
    row = {"prompt": "Question: Who?\n", "completion": "Thought 1: a\nAction 1: Search[X]\nObservation 1: X.\n"
                                                      "Thought 2: b\nAction 2: Finish[y]"}
    for train_on in ("assistant", "all"):
        want = mask_completion(tok, row["prompt"], row["completion"], train_on)
        got = tokenize_row(tok, row, train_on)
        assert got == {"input_ids": want["input_ids"], "labels": want["labels"]}


def test_cli_sft(tiny_dir, react_data, tmp_path):
    from typer.testing import CliRunner

    from reactlab.train.cli import train_app

    recipe_file = tmp_path / "r.yaml"
    recipe_file.write_text(f"model: {tiny_dir}\ndata:\n  path: {react_data}\nlora: {{r: 4}}\n"
                           "trl:\n  max_steps: 2\n  per_device_train_batch_size: 4\n  activation_checkpointing: false\n"
                           "  report_to: []\n  save_strategy: 'no'\n  disable_tqdm: true\n")
    out = tmp_path / "out"
    res = CliRunner().invoke(train_app, ["sft", "-c", str(recipe_file), "-c", f"out={out}", "-c", "lora.r=2"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout[res.stdout.index('{\n  "out"'):])["steps"] == 2
    assert json.loads((out / "adapter_config.json").read_text())["r"] == 2
    bad = CliRunner().invoke(train_app, ["sft", "-c", str(recipe_file), "-c", f"out={out}", "-c", "lora.rank=2"])
    assert bad.exit_code == 2 and "lora.rank" in bad.output and "unknown key" in bad.output


def _tool_data(d: Path, n: int = 8) -> Path:
    """``n`` ``messages-tools`` rows (``data build --format messages-tools``) of 2 or 3 steps."""
    from reactlab.data.formats import to_row
    from reactlab.types import Action, Step, Trajectory

    rows = []
    for i in range(n):
        city = ["Paris", "Berlin", "Rome", "Madrid"][i % 4]
        steps = [Step(1, f"I need to search country {i}.", Action("search", f"country {i}"),
                      f"Country {i} has {city} as its capital." + " More." * (i % 3))]
        if i % 2:
            steps.append(Step(2, "", Action("lookup", "capital"), f"(Result 1 / 1) {city} is the capital."))
        steps.append(Step(len(steps) + 1, f"So it is {city}.", Action("finish", city), "Episode finished."))
        traj = Trajectory(str(i), "hotpotqa", f"What is the capital of country number {i}?", city, "react", "", "",
                          steps=steps)
        rows.append(to_row("messages-tools", traj, "test"))
    d.mkdir(parents=True, exist_ok=True)
    (d / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return d


def test_tool_rows_train_with_the_tool_masks(tiny_dir, tmp_path):
    """``messages-tools`` rows: one epoch, every row reaches the model once with
    ``mask_tool_conversation``'s labels (the calls, not the tool results)."""
    from transformers import AutoTokenizer

    from reactlab.data.formats import row_tools
    from reactlab.data.masking import mask_tool_conversation
    from reactlab.train.sft import tokenize_row, train_sft

    data = _tool_data(tmp_path / "data")
    tok = AutoTokenizer.from_pretrained(tiny_dir)
    rows = [json.loads(x) for x in (data / "train.jsonl").read_text().splitlines()]
    want = [mask_tool_conversation(tok, r["messages"], row_tools(r)) for r in rows]
    assert tokenize_row(tok, rows[1]) == {"input_ids": want[1]["input_ids"], "labels": want[1]["labels"]}
    trained = tok.decode([t for t in want[1]["labels"] if t != -100])
    assert trained.count("<tool_call>") == 3 and "<tool_response>" not in trained and "# Tools" not in trained

    batches: list[dict] = []
    result = train_sft(recipe(tiny_dir, str(data), tmp_path / "out", max_steps=2), callbacks=[_capture(batches)])
    assert result.steps == 2 and result.train_loss is not None
    seen = []
    for b in batches:
        mask = b["attention_mask"]
        seen += [(tuple(b["input_ids"][i][mask[i] == 1].tolist()), tuple(b["labels"][i][mask[i] == 1].tolist()))
                 for i in range(mask.shape[0])]
    assert sorted(seen) == sorted((tuple(e["input_ids"]), tuple(e["labels"])) for e in want)
