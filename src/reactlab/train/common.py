"""What every trainer shares: the base model + tokenizer, the PEFT config, and ``training.json``.

- ``check_method`` runs before anything is loaded, so an impossible request (QLoRA without CUDA)
  fails in a second with a message naming the option, not after minutes of loading.
- ``load_model`` reads a named model (``reactlab.models``), a local HF dir, a ``.gguf`` file or a
  hub id; fp32 on CPU and bf16 on CUDA unless the recipe says otherwise; 4-bit NF4 for QLoRA.
- ``peft_config`` is PEFT's ``LoraConfig`` from ours (None for full fine-tuning).
- ``write_run_json`` records what a run was made of and how it went (see its docstring).

torch, transformers and peft are imported inside the functions (nothing happens at import).
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from reactlab.config import LoraConfig, ModelConfig
from reactlab.io import files_sha256, write_text_atomic


@dataclass
class RunResult:
    """What a training run returns (and writes to ``training.json``). Losses are None when not measured
    (no eval set: no ``eval_loss``). ``tokens_per_s``: real (non-pad) training tokens per second of
    ``trainer.train``; ``peak_mem_mb``: CUDA peak allocation on GPU, else the process' peak RSS."""

    out: str
    train_loss: float | None = None
    eval_loss: float | None = None
    steps: int = 0
    train_tokens: int = 0
    tokens_per_s: float | None = None
    wall_s: float = 0.0
    peak_mem_mb: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def check_method(method: str, model_name: str = "") -> None:
    """Fail early (``ValueError``) on a method this machine cannot run: QLoRA needs CUDA and
    bitsandbytes (4-bit kernels exist only there), and a GGUF file is dequantised, not re-quantised."""
    if method not in ("lora", "qlora", "full"):
        raise ValueError(f"method must be lora, qlora or full, not {method!r}")
    if method != "qlora":
        return
    if not cuda_available():
        raise ValueError(
            "method: qlora loads the base model in 4-bit with bitsandbytes, which needs an NVIDIA GPU (CUDA); "
            "this machine has none. Use LoRA on the full-precision model instead: -c method=lora"
        )
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise ValueError("method: qlora needs bitsandbytes: pip install bitsandbytes (or use -c method=lora)") from None
    if model_name.endswith(".gguf"):
        raise ValueError("method: qlora needs an HF model dir or hub id, not a GGUF file; use method: lora")


def model_path(name: str) -> str:
    """What ``from_pretrained`` should read for the model spec ``name`` (``reactlab.models``): a
    named model's converted dir, else the path, ``.gguf`` file or hub id."""
    from reactlab.models import parse_model

    return parse_model(name).path()


def torch_dtype(cfg: ModelConfig, method: str = "lora"):
    """The weights' dtype: the recipe's, or fp32 on CPU (bf16 matmuls are slow and lossy there) and
    bf16 on CUDA. A QLoRA base computes in bf16 whatever the storage."""
    import torch

    if cfg.dtype != "auto":
        return getattr(torch, cfg.dtype)
    return torch.bfloat16 if cuda_available() or method == "qlora" else torch.float32


def load_model(cfg: ModelConfig, method: str = "lora") -> tuple[Any, Any]:
    """``(model, tokenizer)`` for training. The tokenizer gets a pad token (EOS when it has none);
    it never pads on the left here, collators pad right."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    check_method(method, cfg.name)
    dtype = torch_dtype(cfg, method)
    path = model_path(cfg.name)
    kwargs: dict[str, Any] = {"dtype": dtype}
    if cfg.attn_implementation:
        kwargs["attn_implementation"] = cfg.attn_implementation
    if path.endswith(".gguf"):
        from reactlab.models import load_gguf

        if not Path(path).is_file():
            raise FileNotFoundError(f"GGUF file not found: {path}")
        model, tok = load_gguf(path, dtype)
    else:
        if method == "qlora":
            import torch
            from transformers import BitsAndBytesConfig

            # NF4 + double quantisation + bf16 compute: the QLoRA paper's recipe.
            kwargs["quantization_config"] = BitsAndBytesConfig(
                load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                bnb_4bit_compute_dtype=torch.bfloat16)
            kwargs["device_map"] = {"": 0}
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
        tok = AutoTokenizer.from_pretrained(path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "right"
    if method == "qlora":
        from peft import prepare_model_for_kbit_training

        # Casts norms to fp32 and enables input grads, which gradient checkpointing on a frozen
        # 4-bit base needs.
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=True)
    return model, tok


def peft_config(cfg: LoraConfig, method: str):
    """PEFT's ``LoraConfig`` for ``lora``/``qlora``; None for ``full`` (every weight trains)."""
    if method == "full":
        return None
    from peft import LoraConfig as PeftLoraConfig

    return PeftLoraConfig(r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
                          target_modules=cfg.target_modules, bias="none", task_type="CAUSAL_LM")


# --- training.json -------------------------------------------------------------------------------

TRAINING_FILE = "training.json"
"""A training run's record in its output dir (schema ``reactlab.training/1``); a run of an agent
has ``run.json`` (``reactlab.runner.RunSpec``), a different record."""
TRAINING_SCHEMA = "reactlab.training/1"


def git_commit() -> str | None:
    """The source checkout's commit (``+dirty`` when it has local changes), or None outside git."""
    src = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=src, capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=src,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return sha + ("+dirty" if dirty else "")


def peak_memory_mb() -> float:
    """Peak memory of this process: CUDA's peak allocation when a GPU is in use, else peak RSS."""
    if "torch" in sys.modules:
        import torch

        if torch.cuda.is_available() and torch.cuda.max_memory_allocated() > 0:
            return torch.cuda.max_memory_allocated() / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return rss / (2**20 if sys.platform == "darwin" else 2**10)


def prompt_ids(rows: Sequence[dict[str, Any]]) -> dict[str, int]:
    """How many rows carry each ``prompt_id`` (rows without one count as ``?``)."""
    out: dict[str, int] = {}
    for r in rows:
        k = str(r.get("prompt_id", "?"))
        out[k] = out.get(k, 0) + 1
    return out


def write_training_record(out: str | Path, *, base_model: str, method: str, recipe: dict[str, Any],
                   data_files: Sequence[str | Path], prompt_id_counts: dict[str, int], result: RunResult,
                   trainer: str = "sft") -> dict[str, Any]:
    """Write ``OUT/training.json``: the base model, the sha256 of the data files, the prompt ids seen in
    the data, the full recipe, the git commit, and the result (losses, tokens/s, peak memory, wall
    time). Returns the dict written."""
    import torch
    import transformers

    from reactlab.io import write_json_atomic

    info = {
        "schema": TRAINING_SCHEMA,
        "trainer": trainer,
        "base_model": base_model,
        "method": method,
        "data": {"files": [str(p) for p in data_files], "sha256": files_sha256(data_files)},
        "prompt_ids": prompt_id_counts,
        "recipe": recipe,
        "git_commit": git_commit(),
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     **_versions("trl", "peft")},
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "result": asdict(result),
    }
    write_json_atomic(Path(out) / TRAINING_FILE, info)
    write_text_atomic(Path(out) / "README.md", model_card(info))
    return info


def model_card(info: dict[str, Any]) -> str:
    """The ``README.md`` of a trained adapter or model, from its training record: Hugging Face
    model-card metadata naming the base model (its hub id where known, so the Hub links the two),
    then what it was trained on and how, its losses, and how to run and export it. It replaces the
    card PEFT and TRL write, which name the local directory the base was loaded from, or nothing."""
    from reactlab.models import parse_model

    base = str(info["base_model"])
    try:
        hub = parse_model(base).hub_id()
    except ValueError:
        hub = None
    result = info.get("result", {})
    adapter = info.get("method") in ("lora", "qlora")
    trainer = str(info.get("trainer", "sft"))
    meta = ["---", f"base_model: {hub or base}", f"library_name: {'peft' if adapter else 'transformers'}",
            "pipeline_tag: text-generation", "tags:", "- reactlab", "- trl", f"- {trainer}", "- react-agent"]
    if adapter:
        meta += ["- lora", f"- base_model:adapter:{hub or base}"]
    meta.append("---")
    loss = ", ".join(f"{k} {result[k]:.4f}" for k in ("train_loss", "eval_loss") if result.get(k) is not None)
    data = info.get("data", {})
    out = result.get("out", "OUT")
    lines = [
        *meta, "",
        f"# {Path(str(result.get('out', 'model'))).name}", "",
        f"A ReAct agent: `{base}`" + (f" (`{hub}`)" if hub and hub != base else "")
        + f" fine-tuned with `reactlab train {trainer}` ({info.get('method')}) on ReAct trajectories.", "",
        f"- base model: `{hub or base}`" + (f", loaded from `{base}`" if hub and hub != base else ""),
        f"- data: {', '.join(f'`{f}`' for f in data.get('files', []))} (sha256 `{str(data.get('sha256', ''))[:16]}…`)",
        f"- prompt ids in the data: {', '.join(f'`{k}` ({v})' for k, v in info.get('prompt_ids', {}).items())}",
        f"- {result.get('steps', 0)} optimizer steps, {result.get('train_tokens', 0):,} tokens"
        + (f", {loss}" if loss else "") + f", {result.get('wall_s', 0)} s on {info.get('device', '?')}",
        f"- versions: {', '.join(f'{k} {v}' for k, v in info.get('versions', {}).items())}; "
        f"reactlab commit `{info.get('git_commit') or 'unknown'}`",
        "", "The full recipe and results are in `training.json`.", "", "## Use", "", "```",
        (f"reactlab run --model {base} --adapter {out}" if adapter else f"reactlab run --model hf:{out}")
        + " --style chat --prompt zeroshot",
        (f"reactlab export --model {base} --adapter {out}" if adapter else f"reactlab export --model {out}")
        + " --gguf q8_0 --ollama NAME",
        "```", "",
    ]
    return "\n".join(lines)


def _versions(*names: str) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for n in names:
        try:
            out[n] = version(n)
        except PackageNotFoundError:
            pass
    return out


def read_training_record(out: str | Path) -> dict[str, Any]:
    """``OUT/training.json`` as a dict."""
    return json.loads((Path(out) / TRAINING_FILE).read_text())
