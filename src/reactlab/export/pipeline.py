"""``export_model``, what ``reactlab export`` calls: merge (``merge.py``) -> GGUF files (``gguf.py``) ->
Ollama Modelfiles (``ollama.py``) and a README listing the ``ollama create`` commands. The layout of
``out``: docs/export-serving.md. torch, transformers, peft and gguf load on first use.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class ExportResult:
    """Everything ``export_model`` wrote: ``files`` maps each output path to ``(bytes, seconds)``."""

    out: Path
    hf_dir: Path
    files: dict[Path, tuple[int, float]] = field(default_factory=dict)
    modelfile: Path | None = None
    ollama_command: str | None = None
    warnings: list[str] = field(default_factory=list)


def export_model(
    model: str,
    out: str | Path,
    adapter: str | None = None,
    gguf: list[str] | None = None,
    ollama: str | None = None,
    dtype: str = "fp16",
    system: str | None = None,
    pre: str | None = None,
    num_ctx: int | None = None,
    agent: bool | None = None,
) -> ExportResult:
    """Merge ``adapter`` (if any) into ``model``, then write the GGUF files and the Modelfile.

    ``model``: a named model (``smollm2``), an HF dir or a ``.gguf`` file. ``gguf``: GGUF types
    from ``reactlab.export.gguf.OUTTYPES``. ``ollama``: the Ollama model name; needs at least one
    GGUF type. ``system``: the Modelfile's ``SYSTEM``. ``pre``: llama.cpp pre-tokenizer name (by
    default the source GGUF's, else detected from tokenizer.json). ``num_ctx``: Ollama context
    (default: the model's context length, at most 8192). ``agent``: whether the model is a ReAct
    agent, whose Modelfile also stops at ``Observation:`` (default: when ``adapter`` was trained by
    reactlab, i.e. has a ``training.json``; a base model is a plain chat model).
    """
    import json

    from reactlab.export.gguf import OUTTYPES, export_gguf, gguf_string
    from reactlab.export.merge import merge_adapter

    types = list(gguf or [])
    bad = [t for t in types if t not in OUTTYPES]
    if bad:
        raise ValueError(f"unknown GGUF type(s) {bad}; choose from {', '.join(OUTTYPES)}")
    if ollama and not types:
        raise ValueError("an Ollama Modelfile needs a GGUF file: pass a GGUF type too (e.g. q8_0)")
    out = Path(out)
    merged = merge_adapter(model, adapter, out / "hf", dtype)
    res = ExportResult(out, merged.path, warnings=list(merged.warnings))
    res.files[merged.path] = (_dir_size(merged.path), merged.seconds)
    if pre is None and merged.source_gguf is not None:
        pre = gguf_string(merged.source_gguf, "tokenizer.ggml.pre")
    ggufs = []
    for t in types:
        g = export_gguf(merged.path, out / f"model-{t}.gguf", t, pre=pre, name=_name(model, adapter))
        res.files[g.path] = (g.size_bytes, g.seconds)
        ggufs.append(g.path)
    if ollama:
        from transformers import AutoTokenizer

        from reactlab.export.ollama import create_command, modelfile

        cfg = json.loads((merged.path / "config.json").read_text())
        ctx = num_ctx or min(int(cfg.get("max_position_embeddings") or 4096), 8192)
        tok = AutoTokenizer.from_pretrained(merged.path)
        commands = {}
        if agent is None:
            from reactlab.train.record import TRAINING_FILE

            agent = adapter is not None and (Path(adapter) / TRAINING_FILE).is_file()
        for t, gguf_file in zip(types, ggufs, strict=True):
            text = modelfile(tok, gguf_file.name, system=system, num_ctx=ctx, agent=agent)
            (out / f"Modelfile.{t}").write_text(text)
            commands[t] = create_command(ollama if t == types[0] else f"{ollama}-{t}", out / f"Modelfile.{t}")
        res.modelfile = out / "Modelfile"
        res.modelfile.write_text((out / f"Modelfile.{types[0]}").read_text())
        res.ollama_command = create_command(ollama, res.modelfile)
        (out / "README.md").write_text(_readme(model, adapter, ollama, res, commands,
                                               _precision(merged.source_gguf, dtype), agent))
    return res


def export_roles(model: str, out: str | Path, adapters: dict[str, str], ollama: str | None = None,
                 **options: Any) -> dict[str, ExportResult]:
    """One ``export_model`` per role of a multi-agent pipeline, each role's adapter merged into its
    own copy of the base, into ``out/<role>`` (the Ollama name gets ``-<role>``); ``out/README.md``
    says how to run the pipeline on the merged roles. ``options``: ``export_model``'s keywords.

    The source project merges each role's adapter into its base; a merged role loads without PEFT and
    converts to GGUF like any model, and ``--model ROLE=DIR`` gives it to its role only.
    """
    out = Path(out)
    results = {role: export_model(model, out / role, adapter=adapter,
                                  ollama=f"{ollama}-{role}" if ollama else None, **options)
               for role, adapter in adapters.items()}
    models = " ".join(f"--model {role}={res.hf_dir}" for role, res in results.items())
    rows = "\n".join(f"| `{role}` | `{adapters[role]}` | `{res.hf_dir}` |" for role, res in results.items())
    (out / "README.md").write_text(
        f"# Per-role export of `{model}`\n\nEach role's adapter merged into its own copy of the base:\n\n"
        f"| role | adapter | merged weights |\n|---|---|---|\n{rows}\n\n"
        "Run the pipeline on them (fine-tuned roles run zero-shot):\n\n"
        f"```\nreactlab run --task logic_mcq --agent pipeline --prompt zeroshot {models}\n```\n")
    return results


def _name(model: str, adapter: str | None) -> str:
    base = Path(model).name.removesuffix(".gguf")
    return f"{base}+{Path(adapter).name}" if adapter else base


def _dir_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _precision(source_gguf: Path | None, dtype: str) -> str:
    """A sentence on how precise the exported weights can be: a base read from a quantised GGUF
    holds no more than that quantisation, whatever it is re-encoded to."""
    if source_gguf is None:
        return f"The merged weights were written in {dtype}."
    from collections import Counter

    from gguf import GGUFReader

    kinds = Counter(t.tensor_type.name for t in GGUFReader(source_gguf).tensors if t.n_elements > 1 << 12)
    main = kinds.most_common(1)[0][0] if kinds else "unknown"
    return (f"The base weights came from `{source_gguf.name}` (its large tensors mostly {main}): a "
            f"{dtype} or GGUF re-encoding of them cannot be more precise than {main}.")


def _readme(model: str, adapter: str | None, name: str, res: ExportResult, commands: dict[str, str],
            precision: str, agent: bool) -> str:
    files = "\n".join(
        f"- `{p.relative_to(res.out)}`: {size / 1e6:.1f} MB" for p, (size, _) in res.files.items()
    )
    register = "\n".join(f"{cmd}   # {t}" for t, cmd in commands.items())
    return (
        f"# {name}\n\nExported by `reactlab export` from `{model}`"
        + (f" with the adapter `{adapter}`" if adapter else "")
        + f". {precision}\n\n{files}\n\nRegister it with Ollama (from the directory you ran the export in), "
        "one model per GGUF type (`Modelfile` is the first type's):\n\n"
        f"```\n{register}\nollama run {name}\n```\n\n"
        + ("It is a ReAct agent: generation also stops at `Observation:`, where the tool's answer goes.\n" if agent
           else "A plain chat model: generation stops at the end of its turn only (export with `--agent` to "
                "also stop at `Observation:`).\n")
    )
