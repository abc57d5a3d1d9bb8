"""The Llama architecture in Jittor: what ``LlamaForCausalLM`` (SmolLM2, Llama 2/3) and
``Qwen2ForCausalLM`` compute, in fp32, for training.

``LlamaArgs.from_hf(config)`` reads an HF ``config.json`` dict and refuses what this file does not
compute (another architecture, an activation other than SiLU, sliding-window attention, a RoPE
scaling other than ``linear`` / ``llama3``), so a model it accepts gives HF's logits.

The pieces, as in transformers' modeling files:

- ``RMSNorm``: ``w * x / sqrt(mean(x^2) + eps)``;
- rotary embeddings (``rope_tables``): rotate-half layout, ``inv_freq = theta^(-2i/d)`` (scaled for
  ``linear`` / ``llama3``), tables computed in float32 as transformers does;
- grouped-query attention: ``num_key_value_heads`` K/V heads, each shared by
  ``num_attention_heads / num_key_value_heads`` query heads; q/k/v biases when the config has
  them (Qwen2: q/k/v only; Llama ``attention_bias``: o too);
- SwiGLU MLP: ``down(silu(gate(x)) * up(x))``;
- tied (``lm_head`` = the embedding matrix) or untied output head.

Batches are right-padded: attention is causal only, so a real token never sees the pads after it
(its outputs equal the unpadded row's), and pads carry no label. ``LlamaForCausalLM.loss`` applies
the output head only at the positions that have a label, ``loss_chunk`` positions at a time: the
same mean cross-entropy as computing every position's logits, without a ``(batch, length, vocab)``
tensor.

Mixed precision (``CausalLM.set_precision``): the frozen base weights are cast to ``bfloat16`` or
``float16`` and the activations follow them, while the trainable weights (LoRA's) stay ``float32``
master weights, cast to the compute dtype where they are used, so their gradients arrive in
``float32``. RMSNorm, the attention softmax and the loss are computed in ``float32`` (the additive
causal mask of -1e9 does not fit in ``float16``).

``LlamaForCausalLM.loss_and_grads`` is a training step's forward and backward. With ``checkpoint``
on (torch's activation checkpointing) it runs in stages, each executed before the next is built, so
that Jittor's lazy graph never holds more than one stage: the forward without a graph, keeping only
each decoder layer's input; the head's loss and its gradient, a chunk of labelled positions at a
time; then each layer from the last, recomputed from its input with a graph and differentiated
against the gradient of its output. Values cross from one stage to the next as new Vars made from
numpy copies (a Var detached from another still kept that one's graph alive), and gradients are
summed in numpy. A layer's dropout masks are drawn from a seed fixed for the step, so the
recomputation draws the forward's masks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from reactlab.train.jittor.kernels import bmm
from reactlab.train.jittor.kernels import linear as linear_op
from reactlab.train.jittor.runtime import import_jittor

IGNORE = -100
SUPPORTED = ("llama", "qwen2")


@dataclass(frozen=True)
class LlamaArgs:
    """The shape of a model (the subset of an HF config this architecture reads)."""

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    rope_scaling: dict[str, Any] | None = None
    tie_word_embeddings: bool = False
    qkv_bias: bool = False
    o_bias: bool = False
    mlp_bias: bool = False
    model_type: str = "llama"
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def from_hf(cls, cfg: dict[str, Any]) -> LlamaArgs:
        """Read an HF ``config.json`` dict; ``ValueError`` naming the field for what is not supported.

        >>> a = LlamaArgs.from_hf({"model_type": "qwen2", "vocab_size": 10, "hidden_size": 8, "intermediate_size": 16,
        ...     "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1, "rope_theta": 1e6})
        >>> (a.head_dim, a.qkv_bias, a.o_bias, a.rope_theta, a.tie_word_embeddings)
        (4, True, False, 1000000.0, False)
        """
        mtype = cfg.get("model_type", "llama")
        if mtype not in SUPPORTED:
            raise ValueError(f"config.json: model_type {mtype!r} is not supported by the Jittor path "
                             f"(supported: {', '.join(SUPPORTED)})")
        act = cfg.get("hidden_act", "silu")
        if act != "silu":
            raise ValueError(f"config.json: hidden_act {act!r} is not supported by the Jittor path (only silu)")
        if cfg.get("use_sliding_window"):
            raise ValueError("config.json: use_sliding_window is not supported by the Jittor path")
        if cfg.get("pretraining_tp", 1) not in (1, None):
            raise ValueError("config.json: pretraining_tp > 1 is not supported by the Jittor path")
        rope = dict(cfg.get("rope_parameters") or {})  # transformers 5; older configs: rope_theta + rope_scaling
        if cfg.get("rope_scaling"):
            rope = {**rope, **cfg["rope_scaling"]}
        theta = float(rope.get("rope_theta", cfg.get("rope_theta", 10000.0)))
        kind = rope.get("rope_type", rope.get("type", "default"))
        if kind not in ("default", "linear", "llama3"):
            raise ValueError(f"config.json: rope type {kind!r} is not supported by the Jittor path "
                             "(supported: default, linear, llama3)")
        if rope.get("partial_rotary_factor", 1.0) != 1.0:
            raise ValueError("config.json: partial_rotary_factor is not supported by the Jittor path")
        heads = int(cfg["num_attention_heads"])
        qwen = mtype == "qwen2"
        return cls(
            vocab_size=int(cfg["vocab_size"]), hidden_size=int(cfg["hidden_size"]),
            intermediate_size=int(cfg["intermediate_size"]), num_layers=int(cfg["num_hidden_layers"]),
            num_heads=heads, num_kv_heads=int(cfg.get("num_key_value_heads") or heads),
            head_dim=int(cfg.get("head_dim") or cfg["hidden_size"] // heads),
            rms_norm_eps=float(cfg.get("rms_norm_eps", 1e-6)), rope_theta=theta,
            rope_scaling=None if kind == "default" else {**rope, "rope_type": kind},
            tie_word_embeddings=bool(cfg.get("tie_word_embeddings", not qwen)),
            qkv_bias=qwen or bool(cfg.get("attention_bias", False)),
            o_bias=not qwen and bool(cfg.get("attention_bias", False)),
            mlp_bias=bool(cfg.get("mlp_bias", False)), model_type=mtype,
        )


def inv_freq(args: LlamaArgs) -> np.ndarray:
    """The rotary inverse frequencies (float32, ``head_dim / 2``), scaled as ``rope_scaling`` says."""
    d = args.head_dim
    inv = (1.0 / (np.float32(args.rope_theta) ** (np.arange(0, d, 2, dtype=np.int64).astype(np.float32) / d)))
    inv = inv.astype(np.float32)
    sc = args.rope_scaling
    if sc is None:
        return inv
    factor = float(sc["factor"])
    if sc["rope_type"] == "linear":
        return (inv / factor).astype(np.float32)
    # llama3: long wavelengths divided by `factor`, short ones kept, a smooth blend between.
    low, high = float(sc.get("low_freq_factor", 1.0)), float(sc.get("high_freq_factor", 4.0))
    old = float(sc["original_max_position_embeddings"])
    wavelen = 2 * math.pi / inv
    scaled = np.where(wavelen > old / low, inv / factor, inv)
    smooth = (old / wavelen - low) / (high - low)
    blended = (1 - smooth) * scaled / factor + smooth * scaled
    medium = ~(wavelen < old / high) & ~(wavelen > old / low)
    return np.where(medium, blended, scaled).astype(np.float32)


def rope_tables(args: LlamaArgs, length: int) -> tuple[np.ndarray, np.ndarray]:
    """``(cos, sin)`` of shape ``(length, head_dim)`` for positions ``0..length-1`` (float32)."""
    freqs = np.arange(length, dtype=np.float32)[:, None] * inv_freq(args)[None, :]
    emb = np.concatenate([freqs, freqs], axis=-1)
    return np.cos(emb).astype(np.float32), np.sin(emb).astype(np.float32)


def causal_bias(length: int) -> np.ndarray:
    """``(length, length)`` additive mask: 0 on and below the diagonal, a large negative above."""
    return np.triu(np.full((length, length), -1e9, dtype=np.float32), k=1)


def build(args: LlamaArgs) -> Any:
    """A ``LlamaForCausalLM`` Jittor module of shape ``args`` (weights uninitialised: load them with
    ``reactlab.train.jittor.convert.load_hf``). Module and parameter names follow transformers'
    (``model.layers.0.self_attn.q_proj.weight``...), so a state dict maps one to one."""
    jt = import_jittor()
    nn = jt.nn
    prec = {"dtype": "float32"}  # the compute dtype (``CausalLM.set_precision``)
    Module: Any = nn.Module  # names of Any type: the base classes come from a module imported here
    LinearBase: Any = nn.Linear

    class Linear(LinearBase):
        """``nn.Linear`` (torch's ``(out, in)`` weight) computed by ``kernels.linear``."""

        def execute(self, x: Any) -> Any:
            y = linear_op(x, self.weight)
            return y + self.bias if self.bias is not None else y

    def linear(n_in: int, n_out: int, bias: bool) -> Any:
        return Linear(n_in, n_out, bias=bias)

    class RMSNorm(Module):
        def __init__(self, dim: int, eps: float) -> None:
            self.weight = jt.ones(dim)
            self.eps = eps

        def execute(self, x: Any) -> Any:
            if x.dtype != "float32":  # mixed precision: normalised in float32
                return (self.weight.float32() * _norm(x.float32(), self.eps)).cast(x.dtype)
            return self.weight * _norm(x, self.eps)

    class Attention(Module):
        def __init__(self) -> None:
            h, d = args.hidden_size, args.head_dim
            self.q_proj = linear(h, args.num_heads * d, args.qkv_bias)
            self.k_proj = linear(h, args.num_kv_heads * d, args.qkv_bias)
            self.v_proj = linear(h, args.num_kv_heads * d, args.qkv_bias)
            self.o_proj = linear(args.num_heads * d, h, args.o_bias)

        def execute(self, x: Any, cos: Any, sin: Any, mask: Any) -> Any:
            b, t, _ = x.shape
            d, nh, nkv = args.head_dim, args.num_heads, args.num_kv_heads
            q = self.q_proj(x).reshape(b, t, nh, d).transpose(0, 2, 1, 3)
            k = self.k_proj(x).reshape(b, t, nkv, d).transpose(0, 2, 1, 3)
            v = self.v_proj(x).reshape(b, t, nkv, d).transpose(0, 2, 1, 3)
            q, k = rotate(q, cos, sin), rotate(k, cos, sin)
            # Each K/V head serves the rep = nh // nkv query heads after it, in order: those heads'
            # rows are stacked into one (rep * t)-row matrix per K/V head, so K and V are never
            # copied rep times and each head group is one larger matmul.
            rep = nh // nkv
            q = q.reshape(b, nkv, rep * t, d)
            scores = bmm(q, k.transpose(0, 1, 3, 2)).reshape(b, nh, t, t)
            if scores.dtype != "float32":  # mixed precision: the softmax in float32
                scores = scores.float32()
            probs = nn.softmax(scores * (1.0 / math.sqrt(d)) + mask, dim=-1)
            if probs.dtype != q.dtype:
                probs = probs.cast(q.dtype)
            probs = probs.reshape(b, nkv, rep * t, t)
            out = bmm(probs, v).reshape(b, nh, t, d).transpose(0, 2, 1, 3).reshape(b, t, nh * d)
            return self.o_proj(out)

    class MLP(Module):
        def __init__(self) -> None:
            h, m = args.hidden_size, args.intermediate_size
            self.gate_proj = linear(h, m, args.mlp_bias)
            self.up_proj = linear(h, m, args.mlp_bias)
            self.down_proj = linear(m, h, args.mlp_bias)

        def execute(self, x: Any) -> Any:
            g = self.gate_proj(x)
            return self.down_proj(g * jt.sigmoid(g) * self.up_proj(x))

    class Layer(Module):
        def __init__(self) -> None:
            self.self_attn = Attention()
            self.mlp = MLP()
            self.input_layernorm = RMSNorm(args.hidden_size, args.rms_norm_eps)
            self.post_attention_layernorm = RMSNorm(args.hidden_size, args.rms_norm_eps)

        def execute(self, x: Any, cos: Any, sin: Any, mask: Any) -> Any:
            x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask)
            return x + self.mlp(self.post_attention_layernorm(x))

    class Body(Module):
        def __init__(self) -> None:
            self.embed_tokens = nn.Embedding(args.vocab_size, args.hidden_size)
            self.layers = nn.ModuleList([Layer() for _ in range(args.num_layers)])
            self.norm = RMSNorm(args.hidden_size, args.rms_norm_eps)

        def tables(self, t: int) -> tuple[Any, Any, Any]:
            """``(cos, sin, mask)`` for a length of ``t`` (constants: no gradient)."""
            cos_np, sin_np = rope_tables(args, t)
            cos, sin = jt.array(cos_np), jt.array(sin_np)
            if prec["dtype"] != "float32":
                cos, sin = cos.cast(prec["dtype"]), sin.cast(prec["dtype"])
            return cos.stop_grad(), sin.stop_grad(), jt.array(causal_bias(t)).stop_grad()

        def execute(self, ids: Any) -> Any:
            cos, sin, mask = self.tables(ids.shape[1])
            x = self.embed_tokens(ids)
            for layer in self.layers:
                x = layer(x, cos, sin, mask)
            return self.norm(x)

    class CausalLM(Module):
        def __init__(self) -> None:
            self.args = args
            self.model = Body()
            if not args.tie_word_embeddings:
                self.lm_head = linear(args.hidden_size, args.vocab_size, False)

        def head(self, h: Any) -> Any:
            if args.tie_word_embeddings:
                return linear_op(h, self.model.embed_tokens.weight)
            return self.lm_head(h)

        def execute(self, ids: Any) -> Any:
            """Logits ``(batch, length, vocab)`` of int token ids ``(batch, length)``."""
            return self.head(self.model(ids))

        checkpoint = False
        """Recompute each decoder layer in the backward pass (``loss_and_grads``)."""

        @property
        def dtype(self) -> str:
            """The compute dtype: ``float32``, or what ``set_precision`` chose."""
            return prec["dtype"]

        def set_precision(self, dtype: str, trainable: list[Any]) -> None:
            """Compute in ``dtype`` (``float32``, ``bfloat16``, ``float16``): every weight not in
            ``trainable`` is cast to it once; ``trainable`` stays ``float32`` (see the module doc)."""
            if dtype not in ("float32", "bfloat16", "float16"):
                raise ValueError(f"dtype {dtype!r}: expected float32, bfloat16 or float16")
            keep = {id(p) for p in trainable}
            for m in self.modules():
                for attr in ("weight", "bias"):
                    v = getattr(m, attr, None)
                    if isinstance(v, jt.Var) and id(v) not in keep and v.dtype != dtype:
                        setattr(m, attr, v.cast(dtype).stop_grad())
                        getattr(m, attr).sync()
            prec["dtype"] = dtype
        loss_chunk = 1024
        """Labelled positions per output-head chunk: a ``(loss_chunk, vocab)`` logits tensor at a time."""

        def head_loss(self, picked: Any, gold: np.ndarray) -> Any:
            """The summed cross-entropy of hidden states ``picked (n, hidden)`` against ``gold (n,)``,
            ``loss_chunk`` rows at a time."""
            total = None
            for a in range(0, len(gold), self.loss_chunk):
                logits = self.head(picked[a : a + self.loss_chunk])
                if logits.dtype != "float32":  # mixed precision: the loss in float32
                    logits = logits.float32()
                want = jt.array(gold[a : a + self.loss_chunk].astype(np.int32)).unsqueeze(1)
                mx = logits.max(dim=1, keepdims=True).stop_grad()
                lse = (logits - mx).exp().sum(dim=1).log() + mx.squeeze(1)
                part = (lse - jt.gather(logits, 1, want).squeeze(1)).sum()
                total = part if total is None else total + part
            return total if total is not None else jt.zeros(())

        def loss(self, ids: np.ndarray, labels: np.ndarray, scale: float | None = None) -> tuple[Any, int]:
            """``(loss, n)``: the summed next-token cross-entropy over the ``n`` positions whose shifted
            label is not -100, divided by ``scale`` (default ``n``: the mean). ``ids``/``labels``:
            int arrays ``(batch, length)``, labels unshifted as transformers takes them."""
            where, gold = labelled(ids, labels)
            h = self.model(jt.array(ids.astype(np.int32)))
            picked = h.reshape(-1, args.hidden_size)[where]
            return self.head_loss(picked, gold) / float(scale or max(len(gold), 1)), len(gold)

        def loss_and_grads(self, ids: np.ndarray, labels: np.ndarray, params: list[Any],
                           scale: float | None = None) -> tuple[float, int, list[np.ndarray]]:
            """``(loss, n, grads)``: ``loss(ids, labels, scale)`` as a float and its gradients with
            respect to ``params`` as numpy arrays, by one graph or, with ``checkpoint``, by stages
            (see the module doc)."""
            if not self.checkpoint:
                loss, n = self.loss(ids, labels, scale)
                found = jt.grad(loss, params)
                jt.sync([loss, *found])
                return float(loss.item()), n, [host(g) for g in found]
            where, gold = labelled(ids, labels)
            div = float(scale or max(len(gold), 1))
            grads: list[Any] = [None] * len(params)
            slot = {id(p): i for i, p in enumerate(params)}

            def add(targets: list[Any], found: list[Any]) -> None:
                jt.sync(found)
                for p, g in zip(targets, found, strict=True):  # to numpy: no Var keeps a stage's graph alive
                    i = slot[id(p)]
                    grads[i] = host(g) if grads[i] is None else grads[i] + host(g)

            def fresh(v: Any) -> Any:
                """``v``'s values in a new Var that needs a gradient and knows nothing of ``v``'s graph."""
                out = jt.array(host(v))
                return (out if v.dtype == "float32" else out.cast(v.dtype)).start_grad()

            def mine(module: Any) -> list[Any]:
                return [p for p in module.parameters() if id(p) in slot]

            body = self.model
            tok = jt.array(ids.astype(np.int32))
            cos, sin, mask = body.tables(ids.shape[1])
            seed = int(np.random.randint(0, 2**30))  # numpy's global stream: set per update by the loop
            inputs = []
            with jt.no_grad():  # 1. forward, keeping each layer's input only
                x = body.embed_tokens(tok)
                for i, layer in enumerate(body.layers):
                    inputs.append(x)
                    fix_dropout(layer, seed + 64 * i)
                    x = layer(x, cos, sin, mask)
                    x.sync()
            # 2. the head's loss and gradient, chunk by chunk, from a fresh copy of the final hidden states
            last = fresh(x)
            hidden = body.norm(last).reshape(-1, args.hidden_size)[where]
            picked = fresh(hidden)
            head = mine(body.embed_tokens) if args.tie_word_embeddings else mine(self.lm_head)
            d_picked, total = None, 0.0
            for a in range(0, len(gold), self.loss_chunk):
                part = self.head_loss(picked[a : a + self.loss_chunk], gold[a : a + self.loss_chunk]) / div
                found = jt.grad(part, [picked, *head])
                add(head, found[1:])
                d_picked = host(found[0]) if d_picked is None else d_picked + host(found[0])
                total += float(part.item())
            if d_picked is None:
                return 0.0, 0, [np.zeros(tuple(p.shape), np.float32) for p in params]
            targets = [last] + mine(body.norm)
            found = jt.grad((hidden * jt.array(d_picked)).sum(), targets)
            add(targets[1:], found[1:])
            d_out = jt.array(host(found[0]))
            for i in reversed(range(len(body.layers))):  # 3. each layer recomputed, last first
                layer = body.layers[i]
                x_in = fresh(inputs[i])
                fix_dropout(layer, seed + 64 * i)
                targets = [x_in] + mine(layer)
                found = jt.grad((layer(x_in, cos, sin, mask) * d_out).sum(), targets)
                add(targets[1:], found[1:])
                d_out = jt.array(host(found[0]))
                del found, targets, x_in  # this layer's graph: gone before the next layer's is built
                inputs[i] = None
                fix_dropout(layer, None)
            if id(body.embed_tokens.weight) in slot:
                w = body.embed_tokens.weight
                add([w], jt.grad((body.embed_tokens(tok) * d_out).sum(), [w]))
            return total, len(gold), [g if g is not None else np.zeros(tuple(p.shape), np.float32)
                                      for g, p in zip(grads, params, strict=True)]

    def _norm(x: Any, eps: float) -> Any:
        return x * jt.rsqrt((x * x).mean(-1, keepdims=True) + eps)

    def host(v: Any) -> np.ndarray:
        """``v``'s values as a float32 numpy array (numpy has no bfloat16)."""
        return np.asarray(v.numpy(), dtype=np.float32)

    def rotate(x: Any, cos: Any, sin: Any) -> Any:
        half = x.shape[-1] // 2
        rot = jt.concat([-x[..., half:], x[..., :half]], dim=-1)
        return x * cos + rot * sin

    def fix_dropout(layer: Any, seed: int | None) -> None:
        """Give each dropout in ``layer`` its own seed (``None``: back to Jittor's stream), so that a
        recomputation draws the masks of the forward whatever order Jittor runs the ops in."""
        for j, m in enumerate(layer.modules()):
            if hasattr(m, "dropout_seed"):
                m.dropout_seed = None if seed is None else seed + j

    def labelled(ids: np.ndarray, labels: np.ndarray) -> tuple[Any, np.ndarray]:
        """``(where, gold)``: the flat indices of the positions with a shifted label, and those labels."""
        target = labels[:, 1:]
        rows, cols = np.nonzero(target != IGNORE)
        return jt.array((rows * ids.shape[1] + cols).astype(np.int32)), target[rows, cols]

    return CausalLM()
