"""The stage machinery `reactlab demo` and `reactlab train rft` share: a stage is done only with its
training record, skipped when done, resumed from a checkpoint when one is there."""

from __future__ import annotations

from pathlib import Path

import pytest

from reactlab.config import load_config
from reactlab.io import DataError
from reactlab.train.recipes import SFTRecipe
from reactlab.train.stages import ADAPTER_FILES, adapter_done, refuse, train_stage


def test_an_adapter_is_done_only_with_every_file_the_record_last(tmp_path):
    for f in ADAPTER_FILES[:-1]:
        (tmp_path / f).write_text("{}")
    assert not adapter_done(tmp_path)
    (tmp_path / ADAPTER_FILES[-1]).write_text("{}")
    assert ADAPTER_FILES[-1] == "training.json" and adapter_done(tmp_path)


def test_refuse_names_the_difference(tmp_path):
    refuse(tmp_path, "")
    with pytest.raises(DataError, match=r"x: was made from other inputs \(a: 1 there vs 2 now\); .* remove .*x"):
        refuse(tmp_path / "x", "a: 1 there vs 2 now")


def test_a_stage_is_skipped_when_done_and_resumed_from_a_checkpoint(tmp_path):
    pytest.importorskip("transformers")
    out = tmp_path / "a"
    cfg = load_config(SFTRecipe, [], [f"data.path={tmp_path}", f"out={out}"])
    calls: list[bool] = []
    lines: list[str] = []

    def train(c, resume=False):
        calls.append(resume)

    assert train_stage(cfg, lines.append, "sft", train) == "ran" and calls == [False]
    (out / "checkpoint-3").mkdir(parents=True)
    assert train_stage(cfg, lines.append, "sft", train) == "resumed" and calls == [False, True]
    assert lines[-1] == f"sft -> {out} (resuming from the last checkpoint)"
    for f in ADAPTER_FILES:
        Path(out / f).write_text("{}")
    assert train_stage(cfg, lines.append, "sft", train) == "skipped" and calls == [False, True]
