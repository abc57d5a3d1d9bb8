"""Shared fixtures for the whole suite."""

import pytest


@pytest.fixture(scope="session")
def vendored_index(tmp_path_factory):
    """The index of the vendored 50k-page corpus, built from scratch once per session into a
    temporary home (a few seconds), so every run also proves the build."""
    from reactlab.wiki.index import get_index

    with get_index(home=tmp_path_factory.getbasetemp() / "reactlab_home") as index:
        yield index


@pytest.fixture(scope="session")
def smollm2_dir() -> str:
    """The converted embedded model (converted once into the reactlab cache, then reused)."""
    from reactlab.models import resolve

    return resolve("smollm2")


@pytest.fixture(scope="session")
def gemma_dir() -> str:
    """The converted Gemma 3 270M (the multilingual embedded model; converted once into the cache)."""
    from reactlab.models import resolve

    return resolve("gemma3-270m")


@pytest.fixture(scope="session")
def make_tiny(smollm2_dir, tmp_path_factory):
    """Build a 2-layer model (hidden 64, head size 16, grouped KV heads) with SmolLM2's tokenizer and
    chat template, randomly initialised with a fixed seed, saved to a temp dir; returns its path.

    ``arch``: ``llama`` (tied embeddings) or ``qwen2`` (q/k/v biases, untied output head).
    ``init_std`` defaults large (0.2) so greedy choices are far from ties (fp32 noise must not flip
    a token) and a wrong Q/K permutation or tensor mapping changes the logits a lot; training tests
    pass the usual 0.02.
    """
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    tok = AutoTokenizer.from_pretrained(smollm2_dir)

    def build(arch: str = "llama", init_std: float = 0.2) -> str:
        common = dict(
            vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
            bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
            initializer_range=init_std, rms_norm_eps=1e-5,
        )
        if arch == "llama":
            model_cls, cfg = LlamaForCausalLM, LlamaConfig(tie_word_embeddings=True, **common)
        elif arch == "qwen2":
            model_cls, cfg = Qwen2ForCausalLM, Qwen2Config(tie_word_embeddings=False, **common)
        else:
            raise ValueError(arch)
        torch.manual_seed(0)
        model = model_cls(cfg).eval()
        if arch == "qwen2":
            with torch.no_grad():  # random (not zero) biases, so that a dropped bias shows
                for layer in model.model.layers:
                    for proj in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj):
                        proj.bias.normal_(0, init_std)
        model.config.name_or_path = f"tiny-{arch}"
        out = tmp_path_factory.mktemp(f"tiny-{arch}")
        model.save_pretrained(out)
        tok.save_pretrained(out)
        return str(out)

    return build


@pytest.fixture(scope="session")
def tiny_model_dir(make_tiny) -> str:
    """A tiny random Llama on SmolLM2's tokenizer (see ``make_tiny``)."""
    return make_tiny("llama")


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread while a module's tests run: a tiny model's matmuls are too small to split,
    and on a busy machine two OpenMP threads spin-waiting on each other run a training step up to
    30x slower than one."""
    torch = pytest.importorskip("torch")
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
