"""``reactlab export``: merged weights, GGUF files and an Ollama Modelfile in one command.

Mounted by ``reactlab.cli`` as ``app.command("export")(export_cmd)``. One call into
``reactlab.export.export_model`` (``export_roles`` for ``--adapter ROLE=DIR``); heavy imports
happen inside it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from reactlab.errors import user_errors


def export_cmd(
    model: Annotated[
        str, typer.Option(help="base: a named model (smollm2), an HF dir or a .gguf file")
    ] = "smollm2",
    out: Annotated[
        Path, typer.Option("--out", "-o", help="output directory (hf/, model-<type>.gguf, Modelfile)")
    ] = Path("exports/model"),
    adapter: Annotated[list[str] | None, typer.Option(
        help="PEFT LoRA adapter dir to merge into the base; ROLE=DIR (repeatable) merges each role's adapter "
             "into its own copy, into OUT/ROLE (an Answer -> Evaluate pipeline)")] = None,
    gguf: Annotated[
        list[str] | None,
        typer.Option(help="GGUF type: f32 | f16 | q8_0 | q4_0; repeatable or comma-separated"),
    ] = None,
    ollama: Annotated[str | None, typer.Option(help="write a Modelfile for this Ollama model name")] = None,
    dtype: Annotated[str, typer.Option(help="dtype of the merged HF weights: fp32 | fp16 | bf16")] = "fp16",
    system: Annotated[str | None, typer.Option(help="SYSTEM prompt of the Modelfile")] = None,
    agent: Annotated[bool | None, typer.Option(
        "--agent/--no-agent", help="the Modelfile also stops at 'Observation:' (default: when the adapter "
                                   "was trained by reactlab)")] = None,
    pre: Annotated[
        str | None,
        typer.Option(help="llama.cpp pre-tokenizer name (default: the source GGUF's, else detected)"),
    ] = None,
) -> None:
    """Merge an adapter, convert to GGUF, write an Ollama Modelfile; prints sizes and timings."""
    from reactlab.export import export_model, export_roles

    types = [t.strip() for g in (gguf or []) for t in g.split(",") if t.strip()]
    options: dict[str, Any] = {"gguf": types, "dtype": dtype, "system": system, "pre": pre, "agent": agent}
    with user_errors():
        roles = role_adapters(adapter or [])
        _check_inputs(model, list(roles.values()))
        if "" in roles or not roles:
            results = {"": export_model(model, out, adapter=roles.get(""), ollama=ollama, **options)}
        else:
            results = export_roles(model, out, roles, ollama=ollama, **options)
    for res in results.values():
        for w in res.warnings:
            typer.secho(f"warning: {w}", fg=typer.colors.YELLOW, err=True)
        for path, (size, seconds) in res.files.items():
            typer.echo(f"{str(path):<48} {size / 1e6:9.1f} MB {seconds:7.1f} s")
        if res.ollama_command:
            typer.echo(f"\n{res.modelfile} written; register it with:\n  {res.ollama_command}")
    if "" not in results:
        typer.echo(f"\n{out / 'README.md'}: how to run the pipeline on the merged roles")


def role_adapters(items: list[str]) -> dict[str, str]:
    """``--adapter`` values: one plain ``DIR`` (key ``""``) or ``ROLE=DIR`` ones, never both, no role twice.

    >>> role_adapters(["answer=out/a", "evaluate=out/e"]), role_adapters(["out/a"])
    ({'answer': 'out/a', 'evaluate': 'out/e'}, {'': 'out/a'})
    """
    from reactlab.config import split_role

    roles: dict[str, str] = {}
    for item in items:
        role, path = split_role(item)
        if role in roles:
            raise ValueError(f"--adapter {role + '=' if role else ''}...: given twice")
        roles[role] = path
    if "" in roles and len(roles) > 1:
        raise ValueError("--adapter: either one adapter DIR or ROLE=DIR ones (one per role), not both")
    return roles


def _check_inputs(model: str, adapters: list[str]) -> None:
    """Junk weights or an adapter config of the wrong shape: a one-line error naming the file, before
    anything loads."""
    from reactlab.io import check_safetensors
    from reactlab.weights import check_adapter_files

    if Path(model).is_dir():
        for weights in sorted(Path(model).glob("*.safetensors")):
            check_safetensors(weights)
    for adapter in adapters:
        check_adapter_files(adapter)
