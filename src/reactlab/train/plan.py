"""``reactlab train METHOD --plan``: a recipe's parameters, trainable parameters and GPU memory,
from the model's config alone (a meta-device model: shapes, no weights), and the largest batch x
length that fits a GPU of ``--gpu-memory`` GiB.

The estimate is what PyTorch's allocator holds at the peak of a training step
(``torch.cuda.max_memory_allocated``):

- weights by dtype; QLoRA's quantised linears in NF4 with double quantisation (``NF4_BYTES``), the
  other weights (embeddings, norms, head) in fp32, as ``prepare_model_for_kbit_training`` leaves them;
- the trainable parameters (LoRA's A and B, or every weight), their gradients and optimizer states;
- activations per token: what each decoder layer saves for backward, or with activation
  checkpointing each layer's input plus one layer recomputed;
- the logits path: logits in the compute dtype, their fp32 copy and the log-softmax; TRL's chunked
  LM head (its trainers' default) holds one tile of them instead.

Deliberately left out: attention scores (flash / SDPA attention: memory linear in length), the CUDA
context and allocator fragmentation; the fit keeps ``HEADROOM`` of the GPU free for the last two.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

GiB = 2**30
NF4_BYTES = (4 + 8 / 64 + 32 / (64 * 256)) / 8
"""Bytes per 4-bit weight: the NF4 code, an 8-bit absmax per block of 64, an fp32 constant per 256
absmax values (double quantisation): 4.127 bits."""
HEADROOM = 0.10
"""Share of the GPU the fit leaves free: CUDA context, cuBLAS workspaces, allocator fragmentation."""
HEAD_TILE = (4096, 32768)
"""Tokens x vocabulary entries per projection of TRL's chunked LM head (its sizes on a GPU)."""
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
EPISODE_PROMPT, OBSERVATION_TOKENS = 512, 160
"""An RL episode's length when the recipe sets no ``trl.max_length``: its prompt, then per step the
model's turn (``max_new_tokens``) and an observation (a wiki search result's first sentences)."""


@dataclass(frozen=True)
class Shape:
    """What the arithmetic needs of a model: parameter counts by kind and the layer sizes."""

    arch: str
    params: int
    embedding: int  # input embeddings
    head: int  # the output head's own parameters (0 when tied to the embeddings)
    linears: tuple[tuple[str, int, int], ...]  # (module name, in, out) of every nn.Linear but the head
    quantized: int  # parameters of those linears (what 4-bit quantises)
    layers: int
    hidden: int
    intermediate: int
    q_dim: int
    kv_dim: int
    vocab: int
    max_positions: int | None = None

    def targeted(self, targets: str | list[str]) -> list[tuple[str, int, int]]:
        """The linears LoRA adapts: ``all-linear`` is every linear but the head (PEFT's rule); a list
        matches module names by their last component."""
        names = None if targets == "all-linear" else {targets} if isinstance(targets, str) else set(targets)
        return [x for x in self.linears if names is None or x[0].rsplit(".", 1)[-1] in names]

    def lora_params(self, r: int, targets: str | list[str]) -> int:
        """LoRA's A and B over the target linears: ``r * (in + out)`` each."""
        return sum(r * (i + o) for _, i, o in self.targeted(targets))


def model_shape(config: Any) -> Shape:
    """The ``Shape`` of a transformers config: the model is built on the meta device (no memory,
    no weights) and its modules counted, so any architecture transformers knows is measured."""
    import torch
    from torch import nn
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    emb = model.get_input_embeddings()
    out = model.get_output_embeddings()
    tied = out is not None and out.weight is emb.weight
    linears = tuple((name, m.in_features, m.out_features) for name, m in model.named_modules()
                    if isinstance(m, nn.Linear) and m is not out)
    quantized = sum(p.numel() for name, m in model.named_modules() if isinstance(m, nn.Linear) and m is not out
                    for p in m.parameters(recurse=False))
    heads = text.num_attention_heads
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // heads
    return Shape(
        arch=type(model).__name__, params=sum(p.numel() for p in model.parameters()),
        embedding=emb.weight.numel(), head=0 if tied or out is None else out.weight.numel(),
        linears=linears, quantized=quantized, layers=text.num_hidden_layers, hidden=text.hidden_size,
        intermediate=getattr(text, "intermediate_size", None) or 4 * text.hidden_size,
        q_dim=heads * head_dim, kv_dim=(getattr(text, "num_key_value_heads", None) or heads) * head_dim,
        vocab=text.vocab_size, max_positions=getattr(text, "max_position_embeddings", None),
    )


@dataclass(frozen=True)
class Setup:
    """How a recipe trains, as far as memory goes (``setup_from_recipe`` reads one)."""

    method: str = "lora"  # lora | qlora | full
    weight_dtype: str = "bfloat16"  # storage of the weights that are not 4-bit
    compute_dtype: str = "bfloat16"  # activations: bf16 under autocast or with 16-bit weights
    master_dtype: str | None = None  # full fine-tuning: the trained weights' dtype (default weight_dtype)
    lora_r: int = 16
    lora_targets: str | list[str] = "all-linear"
    lora_dropout: float = 0.05
    adapter_dtype: str = "float32"  # PEFT keeps adapters in fp32 on a 16-bit base (autocast_adapter_dtype)
    optim: str = "adamw_torch"
    checkpointing: bool = True
    batch: int = 8
    length: int = 1024
    sequences_per_row: int = 1  # DPO: chosen and rejected go through together
    reference_copy: bool = False  # a frozen copy of the full model (full fine-tuning with a reference)
    chunked_head: bool = False  # TRL's chunked LM head (``trl_fused_head``): no full logits
    logits_fp32: bool = True  # full logits: the loss upcasts them to fp32 (transformers' loss does)


def optimizer_bytes(optim: str, param_bytes: int) -> float:
    """Optimizer state bytes per trainable parameter: Adam's two moments in the parameter's dtype
    (torch) or fp32 (``*_32bit``), one byte each in the 8-bit optimizers, none for SGD without
    momentum; Adafactor's factored second moment is counted as nothing."""
    o = optim.lower()
    if "8bit" in o:
        return 2
    if "32bit" in o:
        return 8
    if o.startswith("sgd") or "adafactor" in o:
        return 0
    return 2 * param_bytes


@dataclass
class Plan:
    """A recipe's memory, in bytes: ``static`` does not grow with tokens, ``per_token`` does."""

    shape: Shape
    setup: Setup
    trainable: int
    parts: dict[str, float] = field(default_factory=dict)
    per_token: float = 0.0
    activations_per_token: dict[str, float] = field(default_factory=dict)  # with / without checkpointing

    @property
    def tokens(self) -> int:
        return self.setup.batch * self.setup.length * self.setup.sequences_per_row

    @property
    def static(self) -> float:
        return sum(v for k, v in self.parts.items() if k not in ("activations", "logits")) + self.logits_fixed

    @property
    def logits_fixed(self) -> float:
        return _logits(self.shape, self.setup, self.tokens)[1]

    @property
    def total(self) -> float:
        return sum(self.parts.values())

    def max_tokens(self, gpu_gib: float) -> int:
        """The most tokens per micro-batch (batch x length x sequences per row) that fit ``gpu_gib``."""
        free = gpu_gib * GiB * (1 - HEADROOM) - self.static
        return max(0, int(free // self.per_token)) if self.per_token else 0

    def largest_batches(self, gpu_gib: float, lengths: tuple[int, ...] = (512, 1024, 2048, 4096, 8192)) -> dict[int, int]:
        """For each length (up to the model's context), the largest batch that fits."""
        n = self.max_tokens(gpu_gib)
        cap = self.shape.max_positions or max(lengths)
        return {L: n // (L * self.setup.sequences_per_row) for L in lengths if cap >= L}


def _activation_bytes(shape: Shape, setup: Setup) -> tuple[float, float]:
    """Bytes per token saved for backward: ``(one decoder layer, a layer's input)``.

    A layer keeps, for attention and for the MLP, the norm's input, fp32 copy and output; q, k, v,
    the attention output and the output projection's input; the MLP's gate, up, activation and
    product (4 intermediate-sized values). LoRA with
    dropout keeps each adapted linear's dropped input and mask as well."""
    a = DTYPE_BYTES[setup.compute_dtype]
    h, i = shape.hidden, shape.intermediate
    norm = h * (2 * a + 4)  # its input, the fp32 copy it normalises, its output
    attn = norm + (2 * shape.q_dim + 2 * shape.kv_dim) * a + shape.q_dim * a
    mlp = norm + 4 * i * a
    layer = float(attn + mlp)
    if setup.method != "full" and setup.lora_dropout > 0:
        layer += sum(n_in * (a + 1) for _, n_in, _ in shape.targeted(setup.lora_targets)) / max(1, shape.layers)
    return layer, float(h * a)


def _logits(shape: Shape, setup: Setup, tokens: int) -> tuple[float, float]:
    """``(bytes per token, fixed bytes)`` of the logits path. Full logits: the logits in the compute
    dtype, their fp32 copy and the fp32 log-softmax (saved for backward, its gradient written over
    it), or without ``logits_fp32`` a shifted copy and the log-softmax in the compute dtype. A
    chunked head (TRL's) projects ``HEAD_TILE`` tokens x vocabulary entries at a time into one
    buffer and keeps seven fp32 running values per token."""
    a = DTYPE_BYTES[setup.compute_dtype]
    if setup.chunked_head:
        t, v = HEAD_TILE
        return 7 * 4.0, min(tokens, t) * min(shape.vocab, v) * (a + 4)
    return shape.vocab * (a + (4 + 4 if setup.logits_fp32 else 2 * a)), 0.0


def trl_fused_head() -> bool:
    """Whether this TRL's trainers score tokens through its chunked LM head (never the full logits)."""
    try:
        import trl.trainer.utils as trl_utils
    except ImportError:
        return False
    return hasattr(trl_utils, "add_fused_lm_head")


def estimate(shape: Shape, setup: Setup) -> Plan:
    """The ``Plan`` of training ``shape`` as ``setup`` says."""
    w = DTYPE_BYTES[setup.weight_dtype]
    if setup.method == "qlora":
        weights = shape.quantized * NF4_BYTES + (shape.params - shape.quantized) * 4
    else:
        weights = shape.params * w
    if setup.method == "full":
        trainable = shape.params
        tb = DTYPE_BYTES[setup.master_dtype or setup.weight_dtype]
        adapters = 0.0
    else:
        trainable = shape.lora_params(setup.lora_r, setup.lora_targets)
        tb = DTYPE_BYTES[setup.adapter_dtype]
        adapters = trainable * tb
    layer, layer_input = _activation_bytes(shape, setup)
    without = shape.layers * layer + 3 * shape.hidden * 2
    with_ckpt = shape.layers * layer_input + layer + 3 * shape.hidden * 2
    act = with_ckpt if setup.checkpointing else without
    plan = Plan(shape, setup, trainable, activations_per_token={"checkpointing": with_ckpt, "none": without})
    tokens = plan.tokens
    logit_per, logit_fixed = _logits(shape, setup, tokens)
    plan.parts = {
        "weights": weights,
        "reference": weights if setup.reference_copy else 0.0,
        "adapters": adapters,
        "gradients": trainable * tb,
        "optimizer": trainable * optimizer_bytes(setup.optim, tb),
        "activations": act * tokens,
        "logits": logit_per * tokens + logit_fixed,
    }
    plan.per_token = act + logit_per
    return plan


# --- from a recipe -------------------------------------------------------------------------------


def setup_from_recipe(cfg: Any, method: str) -> Setup:
    """The ``Setup`` a ``reactlab train METHOD`` recipe runs on a GPU: the recipe's dtype (bf16 when
    ``auto``), bf16 autocast unless ``trl.bf16: false``, activation checkpointing as the trainer
    sets it (on for SFT and QLoRA unless the recipe says), the recipe's batch, length and optimizer."""
    trl = dict(cfg.trl)
    dtype = "bfloat16" if cfg.model.dtype == "auto" else cfg.model.dtype
    bf16 = trl.get("bf16", True)
    ckpt = trl.get("activation_checkpointing", trl.get("gradient_checkpointing", method == "sft"))
    length = int(trl.get("max_length") or 0)
    if not length and hasattr(cfg, "max_new_tokens"):  # an RL episode: prompt + each step's turn and observation
        length = EPISODE_PROMPT + cfg.max_episode_steps * (cfg.max_new_tokens + OBSERVATION_TOKENS)
    ref = cfg.method == "full" and (method in ("dpo", "kto") or float(trl.get("beta", 0.0)) > 0)
    return Setup(
        method=cfg.method, weight_dtype=dtype,
        compute_dtype="bfloat16" if bf16 or dtype != "float32" else "float32",
        lora_r=cfg.lora.r, lora_targets=cfg.lora.target_modules, lora_dropout=cfg.lora.dropout,
        adapter_dtype="float32", optim=str(trl.get("optim", "adamw_torch")),
        checkpointing=bool(ckpt) or cfg.method == "qlora",
        batch=int(trl.get("per_device_train_batch_size", 8)), length=length or 1024,
        sequences_per_row=2 if method == "dpo" else 1, reference_copy=ref,
        chunked_head=trl_fused_head(),
    )


def load_config(name: str) -> Any:
    """The transformers config of a recipe's ``model.name`` (a named model, an HF dir or a hub id:
    ``config.json`` only). A GGUF file has none: ``ValueError``."""
    from transformers import AutoConfig

    from reactlab.models import parse_model

    spec = parse_model(name)
    if spec.kind == "gguf":
        raise ValueError(f"--plan reads an HF config; {name} is a GGUF file (use its HF dir or hub id)")
    return AutoConfig.from_pretrained(spec.path())


def _gb(x: float) -> str:
    return f"{x / GiB:8.2f} GiB"


def render(plan: Plan, gpu_gib: float | None = None) -> str:
    """The plan as text: counts, the memory by part, activations per token, what fits."""
    s, u = plan.shape, plan.setup
    ckpt = "on" if u.checkpointing else "off"
    lines = [
        f"model       {s.arch}: {s.params / 1e9:.3f}B parameters ({s.layers} layers, hidden {s.hidden}, vocab {s.vocab})",
        f"trainable   {plan.trainable / 1e6:.2f}M parameters ({100 * plan.trainable / s.params:.2f}%)"
        + (f", LoRA r={u.lora_r} on {u.lora_targets}" if u.method != "full" else ""),
        f"recipe      {u.method}, weights {'NF4' if u.method == 'qlora' else u.weight_dtype}, compute {u.compute_dtype}, "
        f"optim {u.optim}, checkpointing {ckpt}, batch {u.batch} x length {u.length}"
        + (f" x {u.sequences_per_row} sequences" if u.sequences_per_row > 1 else ""),
        "",
        "GPU memory at the peak of a step (estimate):",
    ]
    lines += [f"  {k:<12}{_gb(v)}" for k, v in plan.parts.items() if v]
    lines += [f"  {'total':<12}{_gb(plan.total)}", ""]
    a = plan.activations_per_token
    per, fixed = _logits(s, u, plan.tokens)
    lines.append(f"activations per token: {a['checkpointing'] / 2**10:.1f} KiB with checkpointing, "
                 f"{a['none'] / 2**10:.1f} KiB without; logits path {per / 2**10:.2f} KiB per token"
                 + (f" + {fixed / GiB:.2f} GiB (TRL's chunked head)" if u.chunked_head else " (full logits)"))
    if gpu_gib:
        n = plan.max_tokens(gpu_gib)
        fits = "fits" if plan.total <= gpu_gib * GiB * (1 - HEADROOM) else "does NOT fit"
        lines += ["", f"on a {gpu_gib:g} GiB GPU ({100 * HEADROOM:.0f}% kept free): this recipe {fits}; "
                  f"at most {n:,} tokens per micro-batch:"]
        lines += [f"  length {L:>5}: batch {b}" for L, b in plan.largest_batches(gpu_gib).items()]
    return "\n".join(lines)


def plan_recipe(cfg: Any, method: str, gpu_gib: float | None = None) -> str:
    """``--plan``: the text ``render`` makes for a loaded recipe."""
    plan = estimate(model_shape(load_config(cfg.model.name)), setup_from_recipe(cfg, method))
    return render(plan, gpu_gib)

