"""TRL arguments from a recipe (``reactlab.train.args``): the per-CPU bf16 default, the recipe winning."""

from __future__ import annotations

import pytest

pytest.importorskip("trl")


@pytest.mark.parametrize("fast", [False, True])
def test_cpu_bf16_default_follows_the_detected_cpu_and_the_recipe_wins(fast, monkeypatch):
    import reactlab.hardware
    from reactlab.train.args import trl_defaults

    monkeypatch.setattr(reactlab.hardware, "bf16_matmuls_fast", lambda flags=None: fast)
    monkeypatch.setattr("reactlab.train.args.cuda_available", lambda: False)
    assert trl_defaults({}, "o", cpu_bf16=True)["bf16"] is fast
    assert trl_defaults({}, "o")["bf16"] is False  # trainers that did not ask keep fp32
    assert trl_defaults({"bf16": False}, "o", cpu_bf16=True)["bf16"] is False
    assert trl_defaults({"fp16": True}, "o", cpu_bf16=True)["bf16"] is False  # TRL refuses both
    assert trl_defaults({}, "o", cpu_bf16=True)["use_cpu"] is True
