"""``reactlab train``: fine-tune from a recipe.

Mounted by ``reactlab.cli`` as ``app.add_typer(train_app, name="train")``. Each command is one call
into the library; torch, transformers and TRL are imported inside the command.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Annotated

import typer

from reactlab.errors import user_errors

train_app = typer.Typer(no_args_is_help=True, help="Fine-tune models on built datasets (SFT; LoRA, QLoRA, full).")

ConfigOpt = Annotated[list[str], typer.Option(
    "--config", "-c",
    help="a YAML recipe, or KEY=VALUE overriding one (dotted keys, YAML values: lora.r=16, "
         "trl.learning_rate=2e-4); repeatable, applied in order")]


@train_app.callback()
def _group() -> None:
    """Fine-tune models on built datasets (SFT; LoRA, QLoRA, full)."""
    # A callback keeps `sft` a subcommand even while it is the only one (typer would collapse it).


@train_app.command("sft")
def sft_cmd(
    config: ConfigOpt,
    resume: Annotated[bool, typer.Option("--resume", help="continue from the last checkpoint in `out`")] = False,
) -> None:
    """Supervised fine-tuning: writes the adapter (or model), training.json, loss.png and TensorBoard logs to `out`."""
    from reactlab.config import SFTRecipe, load_config, split_specs

    files, overrides = split_specs(config)
    with user_errors():
        cfg = load_config(SFTRecipe, files, overrides)
        from reactlab.train.sft import train_sft

        result = train_sft(cfg, resume=resume)
    typer.echo(json.dumps(asdict(result), indent=2))
