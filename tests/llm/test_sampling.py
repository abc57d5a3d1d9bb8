"""Drawing a token: the frequencies follow the distribution, top-p and zero-probability tokens hold."""

import torch

from reactlab.llm.engine.sampling import draw, pick
from reactlab.types import GenParams


def test_draws_follow_the_distribution_and_never_pick_a_zero():
    probs = torch.tensor([0.0, 0.5, 0.3, 0.0, 0.2, 0.0])
    g = torch.Generator().manual_seed(1)
    n = 20_000
    counts = torch.bincount(torch.tensor([draw(probs * 7.0, g) for _ in range(n)]), minlength=6) / n
    assert counts[[0, 3, 5]].sum() == 0
    assert torch.allclose(counts, probs, atol=0.015), counts  # 3.4 standard errors of the largest share


def test_pick_is_seeded_respects_top_p_and_returns_the_untruncated_logprob():
    logits = torch.tensor([2.0, 1.0, 0.5, -1.0, -3.0])
    params = GenParams(temperature=0.7, top_p=0.8)
    toks = [pick(logits, params, torch.Generator().manual_seed(s))[0] for s in range(400)]
    again = [pick(logits, params, torch.Generator().manual_seed(s))[0] for s in range(400)]
    assert toks == again
    probs = torch.softmax(logits / 0.7, -1)
    keep = int((probs.sort(descending=True).values.cumsum(-1) - probs.sort(descending=True).values < 0.8).sum())
    assert set(toks) == set(range(keep))  # the smallest set reaching top_p, every member drawn
    tok, lp = pick(logits, params, torch.Generator().manual_seed(3))
    assert abs(lp - float(torch.log(probs[tok]))) < 1e-6
