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

train_app = typer.Typer(no_args_is_help=True,
                        help="Fine-tune models on built datasets (SFT, DPO, KTO, GRPO, RLOO; LoRA, QLoRA, full).")

ResumeOpt = Annotated[bool, typer.Option("--resume", help="continue from the last checkpoint in `out`")]
ConfigOpt = Annotated[list[str], typer.Option(
    "--config", "-c",
    help="a YAML recipe, or KEY=VALUE overriding one (dotted keys, YAML values: lora.r=16, "
         "trl.learning_rate=2e-4); repeatable, applied in order")]


@train_app.callback()
def _group() -> None:
    """Fine-tune models on built datasets (SFT, DPO, KTO, GRPO, RLOO; LoRA, QLoRA, full)."""
    # A callback keeps each method a subcommand (typer collapses a lone command into the group).


@train_app.command("sft")
def sft_cmd(
    config: ConfigOpt,
    resume: ResumeOpt = False,
    framework: Annotated[str | None, typer.Option(
        "--framework", help="torch (TRL + PEFT) or jittor (LoRA only); default: the recipe's `framework`, else torch")] = None,
) -> None:
    """Supervised fine-tuning: writes the adapter (or model), training.json, loss.png and TensorBoard logs to `out`."""
    from reactlab.config import SFTRecipe, load_config, split_specs

    files, overrides = split_specs(config)
    if framework is not None:
        overrides = [*overrides, f"framework={framework}"]
    with user_errors():
        cfg = load_config(SFTRecipe, files, overrides)
        if cfg.framework == "jittor":
            from reactlab.train.jittor.train import train_sft_jittor

            result = train_sft_jittor(cfg, resume=resume)
        else:
            from reactlab.train.sft import train_sft

            result = train_sft(cfg, resume=resume)
    typer.echo(json.dumps(asdict(result), indent=2))


@train_app.command("dpo")
def dpo_cmd(config: ConfigOpt, resume: ResumeOpt = False) -> None:
    """DPO on `data build --format dpo` pairs, from the base or an SFT adapter (model.adapter): writes the adapter
    (or model), training.json, loss.png and TensorBoard logs to `out`."""
    from reactlab.config import DPORecipe, load_config, split_specs

    files, overrides = split_specs(config)
    with user_errors():
        cfg = load_config(DPORecipe, files, overrides)
        from reactlab.train.dpo import train_dpo

        result = train_dpo(cfg, resume=resume)
    typer.echo(json.dumps(asdict(result), indent=2))


@train_app.command("kto")
def kto_cmd(config: ConfigOpt, resume: ResumeOpt = False) -> None:
    """KTO on `data build --format kto` rows (label: correct or not), from the base or an SFT adapter
    (model.adapter): writes the adapter (or model), training.json, loss.png and TensorBoard logs to `out`."""
    from reactlab.config import KTORecipe, load_config, split_specs

    files, overrides = split_specs(config)
    with user_errors():
        cfg = load_config(KTORecipe, files, overrides)
        from reactlab.train.kto import train_kto

        result = train_kto(cfg, resume=resume)
    typer.echo(json.dumps(asdict(result), indent=2))


@train_app.command("grpo")
def grpo_cmd(config: ConfigOpt, resume: ResumeOpt = False) -> None:
    """GRPO on `data build --format prompts` rows, whose rollouts are ReAct episodes against the wiki (env: wiki) sampled
    from the current weights: writes the adapter (or model), training.json, loss.png, reward.png and TensorBoard logs to
    `out`."""
    from reactlab.config import GRPORecipe, load_config, split_specs

    files, overrides = split_specs(config)
    with user_errors():
        cfg = load_config(GRPORecipe, files, overrides)
        from reactlab.train.grpo import train_grpo

        result = train_grpo(cfg, resume=resume)
    typer.echo(json.dumps(asdict(result), indent=2))


@train_app.command("rloo")
def rloo_cmd(config: ConfigOpt, resume: ResumeOpt = False) -> None:
    """RLOO on `data build --format prompts` rows, with the same episode rollouts as `train grpo`: writes what it
    writes."""
    from reactlab.config import RLOORecipe, load_config, split_specs

    files, overrides = split_specs(config)
    with user_errors():
        cfg = load_config(RLOORecipe, files, overrides)
        from reactlab.train.rloo import train_rloo

        result = train_rloo(cfg, resume=resume)
    typer.echo(json.dumps(asdict(result), indent=2))
