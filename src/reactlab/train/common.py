"""What every trainer shares: the base model + tokenizer, the PEFT config, and ``training.json``;
and what the preference / RL trainers (``dpo.py``, ``kto.py``) share besides.

- ``check_method`` runs before anything is loaded, so an impossible request (QLoRA without CUDA)
  fails in a second with a message naming the option, not after minutes of loading.
- ``load_model`` reads a named model (``reactlab.models``), a local HF dir, a ``.gguf`` file or a
  hub id; fp32 on CPU and bf16 on CUDA unless the recipe says otherwise; 4-bit NF4 for QLoRA.
- ``peft_config`` is PEFT's ``LoraConfig`` from ours (None for full fine-tuning).
- ``write_training_record`` records what a run was made of and how it went (see its docstring).
- ``load_rows`` / ``data_files`` read a ``data build`` dir; ``columns_dataset`` checks a trainer's
  columns; ``check_trl_keys`` / ``trl_defaults`` build a TRL config from a recipe's ``trl:`` block;
  ``load_policy`` is a preference trainer's model and reference; ``finish_run`` saves and records.

torch, transformers and peft are imported inside the functions (nothing happens at import).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from reactlab.config import LoraConfig, ModelConfig
from reactlab.io import DataError, files_sha256, iter_jsonl, write_text_atomic


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


def score_labelled_positions_only() -> bool:
    """Make TRL's fused LM head project only the positions that carry a label on a CPU too.

    TRL's trainers score tokens through a chunked LM head that never builds the full logits; on
    Triton devices it projects only the labelled positions, elsewhere every position (a varying
    count would recompile XLA / Neuron graphs every batch). A CPU has no graph to recompile, and there the
    prompt positions, which carry no loss, cost a full-vocabulary projection forward and twice
    backward: 41% of a profiled SFT step of SmolLM2 (4 x 300 tokens, half labelled); on FireAct rows
    projecting only the labelled ones ran 1.47x the tokens/s (bench/sft_throughput.py). The result is
    the same: the scored positions are the labelled ones either way. Idempotent; returns
    False when this TRL has no such switch (then nothing changes)."""
    import trl.trainer.utils as trl_utils

    use_triton = getattr(trl_utils, "_use_triton", None)
    if use_triton is None:
        return False
    if getattr(use_triton, "reactlab_cpu_compact", False):
        return True

    def compact(device: Any) -> bool:
        return device.type == "cpu" or use_triton(device)

    compact.reactlab_cpu_compact = True  # type: ignore[attr-defined]
    trl_utils._use_triton = compact
    return True


# Tiles of TRL's chunked LM head where its torch fallback folds them (a CPU): tokens x vocabulary
# entries per projection. TRL's sizes (4,096 x 32,768, for Triton on a GPU) make the fallback build
# several fp32 temporaries of labelled tokens x 32,768 at once: for 4 rows of 590 tokens, half
# labelled, 155 MB each and a +1.9 GB transient over the step; 256 x 4,096 tiles take it to +0.6 GB,
# at the same speed or slightly faster (measured on SmolLM2 LoRA, AMD EPYC, bf16 autocast).
CPU_HEAD_TILE = (256, 4096)


def cpu_lm_head_tiles(tile: tuple[int, int] = CPU_HEAD_TILE) -> bool:
    """Size TRL's LM head tiles for a CPU (``CPU_HEAD_TILE``): the same log-probabilities (an online
    log-sum-exp over the vocabulary chunks; only the summation order moves), a fraction of the
    memory. Process-wide, so only where no CUDA device is there (on a GPU TRL's Triton kernels keep
    their own sizes). False when this TRL lacks either knob (then nothing changes)."""
    import trl.trainer.utils as trl_utils

    try:
        import trl.kernels.chunked_logprob as kernel
    except ImportError:
        return False
    if cuda_available() or not hasattr(kernel, "TOKEN_CHUNK_SIZE") or not hasattr(trl_utils, "_CHUNKED_LOGPROB_CHUNK_SIZE"):
        return False
    kernel.TOKEN_CHUNK_SIZE, trl_utils._CHUNKED_LOGPROB_CHUNK_SIZE = tile
    return True


def load_model(cfg: ModelConfig, method: str = "lora") -> tuple[Any, Any]:
    """``(model, tokenizer)`` for training. The tokenizer gets a pad token (EOS when it has none);
    it never pads on the left here, collators pad right."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    check_method(method, cfg.name)
    score_labelled_positions_only()
    cpu_lm_head_tiles()
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
            # each process of a torchrun / accelerate launch on its own GPU (DDP), else GPU 0
            kwargs["device_map"] = {"": int(os.environ.get("LOCAL_RANK", 0))}
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


def main_process() -> bool:
    """False only in a process of global rank > 0 under ``torchrun`` / ``accelerate launch`` (both set
    ``RANK``), i.e. the one process that reports a run is the one that writes its record."""
    return int(os.environ.get("RANK", "0")) == 0


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


# --- data, TRL configs and the end of a run: shared by the preference / RL trainers -------------


def load_rows(path: str | Path, limit: int | None = None) -> list[dict[str, Any]]:
    """The rows of a JSONL file (the first ``limit``). A missing file is ``FileNotFoundError`` (the
    optional val file is checked for by the caller, ``data_files``); a line that is not a JSON
    object is a ``DataError`` naming the file and line."""
    rows = []
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: no such file")
    for where, row in iter_jsonl(path):
        if not isinstance(row, dict):
            raise DataError(f"{where}: expected a JSON object (a row), got {type(row).__name__}")
        rows.append(row)
        if limit is not None and len(rows) >= limit:
            break
    return rows


def data_files(cfg: Any) -> tuple[Path, Path | None]:
    """``(train file, val file or None)``; the val file is optional (a missing one is no eval)."""
    root = Path(cfg.data.path)
    train = root / cfg.data.train_file
    if not train.is_file():
        raise FileNotFoundError(f"{train}: no training file (build one with `reactlab data build --out {root}`)")
    val = root / cfg.data.val_file if cfg.data.val_file else None
    return train, (val if val is not None and val.is_file() else None)


def _is_messages(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(m, dict) and "role" in m and "content" in m for m in v)


def columns_dataset(rows: Sequence[dict[str, Any]], texts: Sequence[str], where: str, extra: Sequence[str] = ()) -> Any:
    """A ``datasets.Dataset`` of the ``texts`` columns (+ ``extra``) of ``rows``, the other columns
    (``source``, ``prompt_id``...) left out. Every ``texts`` column of a row must be there and be
    the same kind as its ``prompt``: all strings, or all chat message lists (TRL reads a row as
    conversational from its first column); else a ``DataError`` naming the row and column."""
    from datasets import Dataset

    keep = [*texts, *extra]
    out: dict[str, list[Any]] = {k: [] for k in keep}
    for n, row in enumerate(rows, 1):
        missing = [k for k in keep if k not in row]
        if missing:
            raise DataError(f"{where}: row {n}: no {', '.join(map(repr, missing))} column (it has {sorted(row)}); "
                            f"build the data with `reactlab data build --format ...`")
        chat = _is_messages(row[texts[0]])
        for k in texts:
            ok = _is_messages(row[k]) if chat else isinstance(row[k], str)
            if not ok or not row[k]:
                kind = "chat message list" if chat else "string"
                raise DataError(f"{where}: row {n}: {k!r} must be a non-empty {kind}, like {texts[0]!r}")
        for k in keep:
            out[k].append(row[k])
    return Dataset.from_dict(out)


def load_splits(cfg: Any) -> tuple[Path, list[dict[str, Any]], Path | None, list[dict[str, Any]]]:
    """``(train file, its rows, val file or None, its rows)`` of a recipe's ``data`` (``data_files``,
    ``load_rows`` with the recipe's limits); no training row is a ``DataError`` naming the file."""
    train_file, val_file = data_files(cfg)
    train_rows = load_rows(train_file, cfg.data.limit)
    if not train_rows:
        raise DataError(f"{train_file}: no rows to train on")
    val_rows = load_rows(val_file, cfg.data.val_limit) if val_file is not None else []
    return train_file, train_rows, val_file, val_rows


def check_resume(out: str | Path) -> None:
    """``--resume`` needs a ``checkpoint-N`` dir in ``out``: a ``ValueError`` saying how to get one."""
    from transformers.trainer_utils import get_last_checkpoint

    if not Path(out).is_dir() or get_last_checkpoint(str(out)) is None:
        raise ValueError(f"--resume: no checkpoint-N directory in {out} (set trl.save_steps to save them)")


def check_trl_keys(trl: dict[str, Any], config_cls: type) -> None:
    """Raise ``ValueError`` naming each key of a ``trl:`` block that ``config_cls`` (a TRL config
    dataclass) does not take, with the closest argument names, without building the config (which
    checks the hardware)."""
    import dataclasses
    import difflib

    known = {f.name for f in dataclasses.fields(config_cls) if f.init}
    bad = [k for k in trl if k not in known]
    if bad:
        hints = {k: difflib.get_close_matches(k, known, n=3) for k in bad}
        raise ValueError(f"trl: block: not trl.{config_cls.__name__} arguments: "
                         + "; ".join(f"trl.{k}" + (f" (did you mean {', '.join(h)}?)" if h else "") for k, h in hints.items()))
    for f in dataclasses.fields(config_cls):
        if f.name in trl and not _fits(trl[f.name], f.type):
            raise ValueError(f"trl.{f.name}: expected {getattr(f.type, '__name__', f.type)}, got {trl[f.name]!r}")


def _fits(value: Any, kind: Any) -> bool:
    """Whether ``value`` fits a TRL config field of type ``kind`` (checked for plain scalar types
    and their unions with None; other types pass through, as before)."""
    import types
    import typing

    args = typing.get_args(kind) if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union else (kind,)
    if not all(a in (int, float, bool, str, type(None)) for a in args):
        return True
    if isinstance(value, bool):
        return bool in args
    if isinstance(value, int):
        return int in args or float in args
    return isinstance(value, tuple(args))


def trl_defaults(trl: dict[str, Any], out: str, cpu_bf16: bool = False, checkpointing: bool = False) -> dict[str, Any]:
    """Our defaults for a TRL config, for the keys the recipe's ``trl:`` block leaves unset (its keys
    always win): ``output_dir`` = ``out``; TensorBoard logs; ``use_cpu`` without CUDA (KTO's and
    GRPO's configs refuse bf16 otherwise: "doesn't support bf16/gpu"); bf16 (autocast, fp32 master
    weights) on CUDA, and on a CPU only with ``cpu_bf16`` where bf16 matmuls are fast
    (``hardware.bf16_matmuls_fast``: AMX or AVX-512 BF16), detected at run time (TRL defaults it to True, which a
    CPU without bf16 kernels runs slowly); activation (gradient) checkpointing only with
    ``checkpointing`` (TRL turns it on everywhere) unless either of its names is set. SFT asks for
    both: on SmolLM2 LoRA, batch 4 on an AMX Xeon, bf16 + checkpointing ran 200 real tokens/s in
    3.6 GB against fp32's 158 in 7.6 GB (fp32 + checkpointing: 133 in 4.1 GB; bench/sft_throughput.py).
    The other trainers keep fp32 without checkpointing until measured."""
    from reactlab.hardware import bf16_matmuls_fast

    cuda = cuda_available()
    ours: dict[str, Any] = {"output_dir": out, "report_to": ["tensorboard"],
                            "bf16": cuda or (cpu_bf16 and bf16_matmuls_fast())}
    if not cuda:
        ours["use_cpu"] = True
    if "gradient_checkpointing" not in trl and "activation_checkpointing" not in trl:
        ours["activation_checkpointing"] = checkpointing
    return ours | trl


def load_policy(cfg: Any) -> tuple[Any, Any, Any, Any]:
    """``(model, tokenizer, peft_config, ref_model)`` for a preference / RL trainer from a
    ``PreferenceRecipe``: what the TRL trainer's ``model``, ``processing_class``, ``peft_config`` and
    ``ref_model`` arguments get.

    The reference model is the policy as it starts, frozen:

    - ``lora`` from the base: a new adapter (``peft_config``); TRL's reference is the same model with
      the adapter disabled, i.e. the base (no second copy in memory);
    - ``lora`` from an SFT ``model.adapter``: that adapter is loaded trainable and training continues
      it (the recipe's ``lora`` shape is not used: the adapter keeps its own); TRL copies it into a
      frozen second adapter named ``ref`` and computes the reference with it, i.e. the SFT model
      itself, which is what DPO/KTO must stay close to (the bare base would pull the policy back
      past its SFT). The result is one adapter on the base, run like any other (``--adapter out``);
    - ``full``: every weight trains (an SFT adapter is merged in first); the reference is a frozen
      copy of the starting model, made here because TRL would re-load it from the base's path,
      which has no merged adapter (and may be a GGUF file TRL cannot read).
    """
    import copy

    model, tok = load_model(cfg.model, cfg.method)
    adapter = cfg.model.adapter
    if adapter is not None:
        from peft import PeftModel

        if not (Path(adapter) / "adapter_config.json").is_file():
            raise FileNotFoundError(f"model.adapter: {adapter} is not a PEFT adapter dir (no adapter_config.json)")
        model = PeftModel.from_pretrained(model, adapter, is_trainable=cfg.method == "lora")
        if cfg.method == "lora":
            return model, tok, None, None
        model = model.merge_and_unload()
    if cfg.method == "lora":
        return model, tok, peft_config(cfg.lora, cfg.method), None
    ref = copy.deepcopy(model).eval()
    ref.requires_grad_(False)
    return model, tok, None, ref


def with_time_limit(cfg: Any, callbacks: list | None) -> list:
    """``callbacks`` plus a ``TimeLimit`` when the recipe sets ``max_minutes``."""
    out = list(callbacks or [])
    if getattr(cfg, "max_minutes", None):
        out.append(time_limit(cfg.max_minutes))
    return out


def time_limit(minutes: float) -> Any:
    """A ``transformers.TrainerCallback`` that ends training after the update during which
    ``minutes`` of wall time (from this invocation's start: a resumed run gets its own budget)
    have passed; ``hit`` and ``stopped_at_step`` say whether and where. The run then ends as if
    its last step were that one: final eval, save, record. Under several processes all stop after
    the update during which the first of them ran out (``any_process``)."""
    import time

    from transformers import TrainerCallback

    class TimeLimit(TrainerCallback):
        def __init__(self) -> None:
            self.seconds, self.t0, self.hit, self.stopped_at_step = minutes * 60, time.perf_counter(), False, None

        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> Any:
            self.t0 = time.perf_counter()
            return control

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> Any:
            if any_process(time.perf_counter() - self.t0 >= self.seconds, args.device):
                self.hit, self.stopped_at_step = True, state.global_step
                control.should_training_stop = True
            return control

    return TimeLimit()


def any_process(flag: bool, device: Any) -> bool:
    """``flag`` or-ed over the processes of a ``torch.distributed`` group (``flag`` itself without
    one): every process gets the same answer, so they stop at the same step. One that stopped alone
    would leave the others waiting in their next gradient all-reduce until the group times out."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return flag
    t = torch.tensor([float(flag)], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def finish_run(trainer: Any, output: Any, cfg: Any, *, name: str, t0: float, files: Sequence[Path],
               rows: Sequence[dict[str, Any]], n_train: int, n_val: int, resume: bool,
               extra: dict[str, Any] | None = None) -> RunResult:
    """After ``output = trainer.train()``: a final eval (when there is an eval set and the last step
    was not evaluated already, e.g. at the end of an epoch), the adapter or
    model + tokenizer saved to ``cfg.out`` (without TRL's frozen ``ref`` adapter), ``loss.png`` and
    ``training.json`` (``trainer: name``). Returns the ``RunResult`` written.

    Under ``torchrun`` / ``accelerate launch`` every process evaluates and saves (both are collective:
    the Trainer writes from the main process only) and the main process alone writes the plot and the
    record; the others return the same result without writing."""
    import time

    from reactlab.train.plots import plot_losses

    last_eval = next((h for h in reversed(trainer.state.log_history) if "eval_loss" in h), None)
    if trainer.eval_dataset is None:
        metrics = {}
    elif last_eval is not None and last_eval.get("step") == trainer.state.global_step:
        metrics = {k: v for k, v in last_eval.items() if k.startswith("eval_")}  # evaluated at this step already
    else:
        metrics = trainer.evaluate()
    limit = next((c for c in trainer.callback_handler.callbacks if hasattr(c, "stopped_at_step")), None)
    if limit is not None:
        extra = {**(extra or {}), "max_minutes": cfg.max_minutes, "stopped_by_time": limit.hit}
    model = trainer.model
    if "ref" in getattr(model, "peft_config", {}):
        model.delete_adapter("ref")  # TRL's frozen copy of the starting adapter: not part of the result
    out = Path(cfg.out)
    trainer.save_model(str(out))
    history = trainer.state.log_history
    # TRL's count of non-pad tokens trained on; GRPO / RLOO count theirs (prompt + completion) in the state
    tokens = int(getattr(trainer, "_total_train_tokens", 0) or trainer.state.num_input_tokens_seen or 0)
    runtime = output.metrics.get("train_runtime") or 0.0
    losses = [h["loss"] for h in history if "loss" in h]
    result = RunResult(
        out=str(out),
        train_loss=float(losses[-1]) if losses else None,
        eval_loss=metrics.get("eval_loss"),
        steps=trainer.state.global_step,
        train_tokens=tokens,
        tokens_per_s=round(tokens / runtime, 1) if runtime and tokens else None,
        wall_s=round(time.perf_counter() - t0, 1),
        peak_mem_mb=round(peak_memory_mb(), 1),
        extra={"mean_train_loss": output.training_loss, "train_runtime_s": runtime,
               "precision": "bf16" if trainer.args.bf16 else "fp16" if trainer.args.fp16 else "fp32",
               "activation_checkpointing": bool(getattr(trainer.args, "activation_checkpointing", False)),
               "train_rows": n_train, "val_rows": n_val, "resumed": resume,
               "eval_metrics": metrics, **(extra or {}),
               "log_history": [{k: h[k] for k in ("step", "loss", "eval_loss") if k in h} for h in history
                               if "loss" in h or "eval_loss" in h]},
    )
    if trainer.is_world_process_zero():
        plot_losses(history, out / "loss.png", title=f"{name.upper()} {cfg.method} · {Path(cfg.model.name).name}")
        write_training_record(out, base_model=cfg.model.name, method=cfg.method, recipe=cfg.model_dump(mode="json"),
                              data_files=files, prompt_id_counts=prompt_ids(rows), result=result, trainer=name)
    return result
