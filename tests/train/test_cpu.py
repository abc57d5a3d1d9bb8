"""The CPU patches of TRL (``reactlab.train.cpu``): the LM head scoring only labelled positions
on a CPU with the same result, in smaller tiles."""

from __future__ import annotations

import pytest

pytest.importorskip("trl")


def fused_scores(model_dir: str, compact: bool, monkeypatch, tile: tuple[int, int] | None = None
                 ) -> tuple[list[int], object, object]:
    """``(rows the head projected, per-token log-probs, gradient of the input embeddings)`` of one
    fused-head forward/backward of a fresh tiny model on a half-labelled batch; ``tile``: the CPU
    tiles (``cpu_lm_head_tiles``) instead of TRL's."""
    import torch
    import trl.kernels.chunked_logprob as kernel
    import trl.trainer.utils as trl_utils
    from transformers import AutoModelForCausalLM
    from trl.kernels.chunked_logprob import ChunkedLogProbFunction, _use_triton
    from trl.trainer.utils import add_fused_lm_head

    from reactlab.train.cpu import cpu_lm_head_tiles, score_labelled_positions_only

    monkeypatch.setattr(trl_utils, "_use_triton", _use_triton)  # TRL's own choice, restored after the test
    monkeypatch.setattr(kernel, "TOKEN_CHUNK_SIZE", kernel.TOKEN_CHUNK_SIZE)
    monkeypatch.setattr(trl_utils, "_CHUNKED_LOGPROB_CHUNK_SIZE", trl_utils._CHUNKED_LOGPROB_CHUNK_SIZE)
    if compact:
        assert score_labelled_positions_only()
    if tile:
        assert cpu_lm_head_tiles(tile)
        assert tile == (kernel.TOKEN_CHUNK_SIZE, trl_utils._CHUNKED_LOGPROB_CHUNK_SIZE)
    projected: list[int] = []

    class Counting:
        @staticmethod
        def apply(hidden, *args):
            projected.append(hidden.shape[0])
            return ChunkedLogProbFunction.apply(hidden, *args)

    monkeypatch.setattr(trl_utils, "_ChunkedLogProbFunction", Counting)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    add_fused_lm_head(model, outputs=("log_probs", "entropy", "is_top1"))
    ids = torch.randint(0, 1000, (2, 12))
    labels = ids.clone()
    labels[:, :7] = -100
    embeds = model.get_input_embeddings()(ids).detach().requires_grad_(True)
    out = model(inputs_embeds=embeds, attention_mask=torch.ones_like(ids), labels=labels, fused_lm_head=True)
    out.loss.backward()
    return projected, out.log_probs.detach(), embeds.grad


def test_the_cpu_head_projects_only_labelled_positions_with_the_same_result(tiny_dir, monkeypatch):
    import torch

    full_rows, full_lp, full_grad = fused_scores(tiny_dir, False, monkeypatch)
    rows, lp, grad = fused_scores(tiny_dir, True, monkeypatch)
    assert full_rows == [2 * 11]  # every shifted position
    assert rows == [2 * 5]  # the labelled ones: 12 - 7 per row
    torch.testing.assert_close(lp, full_lp, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grad, full_grad, rtol=1e-4, atol=1e-7)
    assert bool((lp[:, :6] == 0).all()) and bool((lp[:, 6:] < 0).all())


def test_small_cpu_tiles_give_the_same_log_probs_and_gradients(tiny_dir, monkeypatch):
    import torch
    from transformers import AutoConfig

    vocab = AutoConfig.from_pretrained(tiny_dir).vocab_size
    rows, lp, grad = fused_scores(tiny_dir, True, monkeypatch)
    # 3 tokens x 7 vocabulary entries per tile: 4 token chunks x ceil(vocab / 7) vocabulary chunks
    small_rows, small_lp, small_grad = fused_scores(tiny_dir, True, monkeypatch, tile=(3, 7))
    assert vocab > 7 and small_rows == rows
    torch.testing.assert_close(small_lp, lp, rtol=1e-5, atol=1e-6)
    # the input gradient sums over the vocabulary chunks in another order: fp32 rounding only
    assert float(grad.abs().max()) > 1e-3
    torch.testing.assert_close(small_grad, grad, rtol=1e-4, atol=2e-6)


def test_cpu_tiles_are_left_alone_where_cuda_is_there(monkeypatch):
    import trl.kernels.chunked_logprob as kernel

    from reactlab.train import cpu

    monkeypatch.setattr(kernel, "TOKEN_CHUNK_SIZE", kernel.TOKEN_CHUNK_SIZE)
    before = kernel.TOKEN_CHUNK_SIZE
    monkeypatch.setattr(cpu, "cuda_available", lambda: True)
    assert cpu.cpu_lm_head_tiles((5, 9)) is False
    assert before == kernel.TOKEN_CHUNK_SIZE


def test_score_labelled_positions_only_is_idempotent():
    import trl.trainer.utils as trl_utils

    from reactlab.train.cpu import score_labelled_positions_only

    assert score_labelled_positions_only()
    patched = trl_utils._use_triton
    assert score_labelled_positions_only()
    assert trl_utils._use_triton is patched


def test_patch_trl_for_cpu_applies_every_patch(monkeypatch):
    import trl.kernels.chunked_logprob as kernel
    import trl.trainer.utils as trl_utils

    from reactlab.train import cpu

    monkeypatch.setattr(trl_utils, "_use_triton", trl_utils._use_triton)  # restored after the test
    monkeypatch.setattr(kernel, "TOKEN_CHUNK_SIZE", kernel.TOKEN_CHUNK_SIZE)
    monkeypatch.setattr(trl_utils, "_CHUNKED_LOGPROB_CHUNK_SIZE", trl_utils._CHUNKED_LOGPROB_CHUNK_SIZE)
    monkeypatch.setattr(cpu, "cuda_available", lambda: False)
    cpu.patch_trl_for_cpu()
    assert getattr(trl_utils._use_triton, "reactlab_cpu_compact", False)
    assert (kernel.TOKEN_CHUNK_SIZE, trl_utils._CHUNKED_LOGPROB_CHUNK_SIZE) == cpu.CPU_HEAD_TILE
