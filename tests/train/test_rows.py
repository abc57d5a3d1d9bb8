"""Tool rows as TRL's ``SFTTrainer`` takes them (``rows.tool_dataset``): the calls survive the
``datasets`` table exactly, and TRL tokenizes and trains on them as we mask them."""

from __future__ import annotations

import json
import math

import pytest

from reactlab.data.formats import row_tools, to_row
from reactlab.train.rows import tool_dataset
from reactlab.types import Action, Step, Trajectory


def tool_rows(n: int) -> list[dict]:
    """``n`` ``messages-tools`` rows as read from JSONL: a search (or a search and a lookup), then a finish."""
    rows = []
    for i in range(n):
        city = ["Paris", "Berlin", "Rome", "Madrid"][i % 4]
        steps = [Step(1, f"I need to search country {i}.", Action("search", f"country {i}"), f"Its capital is {city}.")]
        if i % 2:
            steps.append(Step(2, "", Action("lookup", "capital"), f"(Result 1 / 1) {city} is the capital."))
        steps.append(Step(len(steps) + 1, f"So it is {city}.", Action("finish", city), "Episode finished."))
        traj = Trajectory(str(i), "hotpotqa", f"What is the capital of country number {i}?", city, "react", "", "",
                          steps=steps)
        rows.append(json.loads(json.dumps(to_row("messages-tools", traj, "test"))))
    return rows


def test_tool_dataset_keeps_each_call_as_written():
    from datasets import Dataset

    rows = tool_rows(2)
    ds = tool_dataset(rows)
    assert [ds[i]["messages"] for i in range(2)] == [r["messages"] for r in rows]
    assert json.loads(ds[1]["tools"]) == row_tools(rows[1])
    # why: a plain table merges the tools' argument names into one struct, null where a call has none
    plain = Dataset.from_list([{"messages": r["messages"]} for r in rows])
    assert plain[1]["messages"][1]["tool_calls"][0]["function"]["arguments"] != {"entity": "country 1"}


def test_trl_sft_trainer_trains_on_tool_messages(tiny_dir, tmp_path):
    """TRL's ``SFTTrainer`` with its own ``assistant_only_loss`` (TRL's generation-marked Qwen2.5 template
    on the tiny model's tokenizer) tokenizes our rows into our ids and masks, then trains 2 steps."""
    pytest.importorskip("trl")
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer
    from trl.chat_template_utils import qwen2_5_training_chat_template

    from reactlab.data.masking import mask_tool_conversation

    tok = AutoTokenizer.from_pretrained(tiny_dir)
    tok.chat_template = qwen2_5_training_chat_template
    rows = tool_rows(8)
    args = SFTConfig(output_dir=str(tmp_path / "out"), max_steps=2, per_device_train_batch_size=4, learning_rate=1e-2,
                     assistant_only_loss=True, use_cpu=True, report_to=[], save_strategy="no", logging_steps=1,
                     disable_tqdm=True, seed=0)
    trainer = SFTTrainer(model=AutoModelForCausalLM.from_pretrained(tiny_dir), args=args,
                         train_dataset=tool_dataset(rows), processing_class=tok)
    for row, ex in zip(rows, trainer.train_dataset, strict=True):
        ours = mask_tool_conversation(tok, row["messages"], row_tools(row))
        assert ex["input_ids"] == ours["input_ids"]
        assert ex["labels"] == ours["labels"]  # TRL's labels from its own assistant mask
    text = tok.decode(trainer.train_dataset[1]["input_ids"])
    assert '"arguments": {"keyword": "capital"}' in text and "null" not in text
    out = trainer.train()
    assert out.global_step == 2 and math.isfinite(out.training_loss)
