"""The Jittor path's optimizer computes torch's AdamW, clipping and transformers' schedules."""

from __future__ import annotations

import numpy as np
import pytest

from reactlab.train.jittor.optim import AdamW, clip_grads, lr_factor


@pytest.mark.parametrize("kind", ["linear", "cosine", "constant", "constant_with_warmup"])
def test_schedules_match_transformers(kind):
    import torch
    from transformers import get_scheduler

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = get_scheduler(kind, opt, num_warmup_steps=3, num_training_steps=20)
    for step in range(20):
        assert lr_factor(kind, step, 3, 20) == pytest.approx(opt.param_groups[0]["lr"], abs=1e-12), step
        opt.step()
        sched.step()


def test_adamw_with_clipping_matches_torch():
    import torch

    rng = np.random.default_rng(0)
    shapes = [(4, 3), (5,)]
    start = [rng.normal(size=s).astype(np.float32) for s in shapes]
    params = [torch.nn.Parameter(torch.tensor(p)) for p in start]
    ref = torch.optim.AdamW(params, lr=1e-2, weight_decay=0.1, betas=(0.9, 0.95), eps=1e-6)
    ours, mine = AdamW(shapes, weight_decay=0.1, betas=(0.9, 0.95), eps=1e-6), [p.copy() for p in start]
    for _ in range(5):
        grads = [rng.normal(size=s).astype(np.float32) for s in shapes]
        for p, g in zip(params, grads, strict=True):
            p.grad = torch.tensor(g)
        want = torch.nn.utils.clip_grad_norm_(params, 1.0).item()
        ref.step()
        assert clip_grads(grads, 1.0) == pytest.approx(want, rel=1e-5)
        mine = ours.step(mine, grads, lr=1e-2)
    for p, m in zip(params, mine, strict=True):
        assert np.abs(p.detach().numpy() - m).max() < 1e-6


def test_optimizer_state_round_trips(tmp_path):
    opt = AdamW([(2, 2)], weight_decay=0.0)
    p = opt.step([np.ones((2, 2), np.float32)], [np.full((2, 2), 0.5, np.float32)], lr=0.1)
    opt.save(tmp_path / "o.npz")
    again = AdamW([(2, 2)], weight_decay=0.0)
    again.load(tmp_path / "o.npz")
    g = [np.full((2, 2), -0.25, np.float32)]
    assert np.array_equal(opt.step(p, g, 0.1)[0], again.step(p, g, 0.1)[0])
    with pytest.raises(ValueError, match="another set of parameters"):
        AdamW([(2, 2), (3,)], weight_decay=0.0).load(tmp_path / "o.npz")
