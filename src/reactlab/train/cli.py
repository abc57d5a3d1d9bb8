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
                        help="Fine-tune models on built datasets (SFT, RFT, DPO, KTO, GRPO, RLOO; LoRA, QLoRA, full).")

ResumeOpt = Annotated[bool, typer.Option("--resume", help="continue from the last checkpoint in `out`")]
ConfigOpt = Annotated[list[str], typer.Option(
    "--config", "-c",
    help="a YAML recipe, or KEY=VALUE overriding one (dotted keys, YAML values: lora.r=16, "
         "trl.learning_rate=2e-4); repeatable, applied in order")]
PlanOpt = Annotated[bool, typer.Option("--plan", help="print parameters and a GPU-memory estimate from the config; train nothing")]
GpuMemOpt = Annotated[float | None, typer.Option("--gpu-memory", min=0.1, help="with --plan: GiB of the GPU to fit (largest batch x length)")]


@train_app.callback()
def _group() -> None:
    """Fine-tune models on built datasets (SFT, RFT, DPO, KTO, GRPO, RLOO; LoRA, QLoRA, full)."""
    # A callback keeps each method a subcommand (typer collapses a lone command into the group).


TRAINERS = {  # method (/framework) -> "module:function"; each takes (recipe, resume=) and returns a RunResult
    "sft": "reactlab.train.sft:train_sft",
    "sft/jittor": "reactlab.train.jittor.train:train_sft_jittor",
    "dpo": "reactlab.train.dpo:train_dpo",
    "kto": "reactlab.train.kto:train_kto",
    "grpo": "reactlab.train.grpo:train_grpo",
    "rloo": "reactlab.train.rloo:train_rloo",
}


def _train(method: str, config: list[str], resume: bool, overrides: tuple[str, ...] = (), plan: bool = False,
           gpu_memory: float | None = None) -> None:
    """Load ``reactlab.train.recipes.<METHOD>Recipe`` from the ``-c`` specs, train, print the ``RunResult``."""
    import importlib

    from reactlab import config as configs
    from reactlab.train import recipes

    files, specs = configs.split_specs(config)
    with user_errors():
        cfg = configs.load_config(getattr(recipes, f"{method.upper()}Recipe"), files, [*specs, *overrides])
        if plan:
            from reactlab.train.plan import plan_recipe

            typer.echo(plan_recipe(cfg, method, gpu_memory))
            return
        key = f"{method}/{cfg.framework}" if getattr(cfg, "framework", "torch") != "torch" else method
        module, function = TRAINERS[key].split(":")
        result = getattr(importlib.import_module(module), function)(cfg, resume=resume)
    from reactlab.train.limits import main_process

    if main_process():  # one result on stdout, however many processes trained
        typer.echo(json.dumps(asdict(result), indent=2))


@train_app.command("sft")
def sft_cmd(
    config: ConfigOpt,
    resume: ResumeOpt = False,
    plan: PlanOpt = False,
    gpu_memory: GpuMemOpt = None,
    framework: Annotated[str | None, typer.Option(
        "--framework", help="torch (TRL + PEFT) or jittor (LoRA only); default: the recipe's `framework`, else torch")] = None,
) -> None:
    """Supervised fine-tuning: writes the adapter (or model), training.json, loss.png and TensorBoard logs to `out`."""
    _train("sft", config, resume, () if framework is None else (f"framework={framework}",), plan, gpu_memory)


@train_app.command("dpo")
def dpo_cmd(config: ConfigOpt, resume: ResumeOpt = False, plan: PlanOpt = False, gpu_memory: GpuMemOpt = None) -> None:
    """DPO on `data build --format dpo` pairs, from the base or an SFT adapter (model.adapter): writes the adapter
    (or model), training.json, loss.png and TensorBoard logs to `out`."""
    _train("dpo", config, resume, plan=plan, gpu_memory=gpu_memory)


@train_app.command("kto")
def kto_cmd(config: ConfigOpt, resume: ResumeOpt = False, plan: PlanOpt = False, gpu_memory: GpuMemOpt = None) -> None:
    """KTO on `data build --format kto` rows (label: correct or not), from the base or an SFT adapter
    (model.adapter): writes the adapter (or model), training.json, loss.png and TensorBoard logs to `out`."""
    _train("kto", config, resume, plan=plan, gpu_memory=gpu_memory)


@train_app.command("grpo")
def grpo_cmd(config: ConfigOpt, resume: ResumeOpt = False, plan: PlanOpt = False, gpu_memory: GpuMemOpt = None) -> None:
    """GRPO on `data build --format prompts` rows, whose rollouts are ReAct episodes against the wiki (env: wiki) sampled
    from the current weights: writes the adapter (or model), training.json, loss.png, reward.png and TensorBoard logs to
    `out`."""
    _train("grpo", config, resume, plan=plan, gpu_memory=gpu_memory)


@train_app.command("rloo")
def rloo_cmd(config: ConfigOpt, resume: ResumeOpt = False, plan: PlanOpt = False, gpu_memory: GpuMemOpt = None) -> None:
    """RLOO on `data build --format prompts` rows, with the same episode rollouts as `train grpo`: writes what it
    writes."""
    _train("rloo", config, resume, plan=plan, gpu_memory=gpu_memory)


@train_app.command("rft")
def rft_cmd(
    config: ConfigOpt,
    out: Annotated[str | None, typer.Option("--out", help="the stage dirs and rft.json (default: the recipe's `out`)")] = None,
) -> None:
    """Rejection-sampling fine-tuning (expert iteration): rounds of sampling k episodes per train-pool question from the
    last adapter, keeping the correct grounded ones and training the SFT recipe again on them plus the SFT rows; each
    stage is skipped when done, so a rerun resumes. Prints each round's summary (OUT/round-R/rft.json)."""
    from reactlab import config as configs
    from reactlab.train.recipes import RFTRecipe

    files, specs = configs.split_specs(config)
    with user_errors():
        cfg = configs.load_config(RFTRecipe, files, [*specs, *([f"out={out}"] if out else [])])  # --out wins
        from reactlab.train.rft import run_rft

        result = run_rft(cfg, log=lambda line: typer.echo(line, err=True))
    typer.echo(json.dumps(result.rounds, indent=2))
