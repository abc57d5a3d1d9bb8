"""``reactlab demo``: the FireAct loop in miniature — baseline, data, LoRA SFT, evaluation, report —
offline, on one model, in one command.

Each stage is one ``reactlab`` command run in process (``commands`` lists them, the report prints
them) into ``OUT/<stage>``, skipped when its output is complete, so a rerun resumes. Every option and
every existing output is checked before the first stage runs: an output made from other inputs is
an error naming both, never silently reused.
"""

from __future__ import annotations

import gc
import json
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reactlab.config import ModelRef, RunConfig, find_recipe, load_config, split_key_value
from reactlab.io import DataError, write_text_atomic
from reactlab.paths import recipes_dir
from reactlab.report import Arm, Summary
from reactlab.runner import differences
from reactlab.train.recipes import GRPORecipe, SFTRecipe
from reactlab.train.record import TRAINING_FILE
from reactlab.train.stages import adapter_done as _adapter_done
from reactlab.train.stages import flat as _flat
from reactlab.train.stages import refuse as _refuse
from reactlab.train.stages import train_stage

if TYPE_CHECKING:
    from reactlab.wiki.index import WikiIndex

DEFAULT_RECIPE = recipes_dir() / "sft_smollm2_lora.yaml"
GRPO_RECIPE = recipes_dir() / "grpo_smollm2_lora.yaml"
# A time budget ends GRPO, so the learning rate must not depend on a planned end.
GRPO_OVERRIDES = ("trl.lr_scheduler_type=constant_with_warmup", "trl.warmup_steps=2", "trl.save_steps=5")
FIREACT = "fireact:hotpotqa"
# The recipe is sized for the full ~1,230-row set; on a few hundred rows its updates are too few
# (and mostly warmup) for the adapter to learn the action format: two epochs at lr 1e-3 with 3
# warmup updates do. Checkpoints every 10 updates so a killed training resumes. `-c` overrides any.
DEMO_OVERRIDES = ("trl.save_steps=10", "trl.num_train_epochs=2", "trl.learning_rate=1e-3", "trl.warmup_steps=3")
# Rows of the SFT set (train + val), grounded trajectories only; chosen on held-out train-pool
# questions, never on the evaluation questions.
TRAIN_ROWS = 300
# Recipe keys the demo sets itself (the stages are chained through them): `-c` may not move them.
OWNED = ("out", "data", "data.path", "model", "model.name")


@dataclass(frozen=True)
class Demo:
    """One demo's options (``run_demo``'s arguments) and the stage directories under ``out``."""

    out: Path
    model: str = "smollm2"
    n: int = 100
    train_rows: int = TRAIN_ROWS
    overrides: tuple[str, ...] = ()
    recipe: Path = DEFAULT_RECIPE
    batch_size: int = 32
    max_steps: int = 7
    seed: int = 0
    grpo_minutes: float = 0.0
    grpo_overrides: tuple[str, ...] = ()

    def dir(self, stage: str) -> Path:
        return self.out / stage

    @property
    def base_model(self) -> str:
        """What the trainer loads: the model spec (``reactlab.models.parse_model`` reads it there too)."""
        return self.model

    def run_config(self, stage: str) -> RunConfig:
        """The ``reactlab run`` options of a run stage."""
        out = str(self.dir(stage))
        if stage == "oracle-train":
            return RunConfig(out=out, agent="oracle", split="train")
        if stage == "baseline":
            return RunConfig(out=out, model=ModelRef(name=self.model), split="eval", limit=self.n,
                             max_steps=self.max_steps, batch_size=self.batch_size)
        if stage in ("finetuned", "grpo-finetuned"):
            adapter = self.dir("adapter" if stage == "finetuned" else "grpo")
            return RunConfig(out=out, model=ModelRef(name=self.model, adapter=str(adapter)), split="eval",
                             limit=self.n, style="chat", prompt="zeroshot", max_steps=self.max_steps,
                             batch_size=self.batch_size)
        raise KeyError(stage)

    def data_options(self) -> dict[str, Any]:
        """``build_dataset`` keywords of the data stage (the contamination guard is its default)."""
        return {"sources": [str(self.dir("oracle-train")), FIREACT], "out": self.dir("data"), "format": "messages",
                "grounded": True, "max_rows": self.train_rows, "seed": self.seed, "tokenizer": self.model}

    def recipe_overrides(self) -> list[str]:
        return [f"out={self.dir('adapter')}", f"data.path={self.dir('data')}", f"model.name={self.base_model}",
                *DEMO_OVERRIDES, *self.overrides]

    def grpo_recipe_overrides(self) -> list[str]:
        return [f"out={self.dir('grpo')}", f"data.path={self.dir('grpo-data')}", f"model.name={self.base_model}",
                f"model.adapter={self.dir('adapter')}", f"max_minutes={self.grpo_minutes:g}", *GRPO_OVERRIDES,
                *self.grpo_overrides]

    @property
    def arms(self) -> tuple[tuple[str, str], ...]:
        """The report's rows: ``(stage, method)``."""
        return ARMS + ((("grpo-finetuned", "LoRA SFT + GRPO, zero-shot chat"),) if self.grpo_minutes else ())


@dataclass
class DemoResult:
    """What ``run_demo`` returns: the report table's ``rows`` (one ``Arm`` each: baseline, fine-tuned),
    what each stage did (``stages``: ``ran`` | ``resumed`` | ``skipped``) and the report's markdown
    (also in ``out/report.md``)."""

    out: Path
    rows: list[Arm]
    stages: dict[str, str]
    report: str


def run_demo(
    out: str | Path = "runs/demo",
    *,
    model: str = "smollm2",
    n: int = 100,
    train_rows: int = TRAIN_ROWS,
    overrides: Sequence[str] = (),
    recipe: str | Path = DEFAULT_RECIPE,
    batch_size: int = 32,
    max_steps: int = 7,
    seed: int = 0,
    grpo_minutes: float = 0.0,
    grpo_overrides: Sequence[str] = (),
    index: WikiIndex | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> DemoResult:
    """Run the stages into ``out`` (baseline, oracle-train, data, adapter, finetuned; each skipped when
    done) and write ``out/report.md`` and ``out/report.html``.

    ``model``: a named model (``smollm2``) or ``hf:PATH`` — something this machine can fine-tune.
    ``n``: eval questions per arm. ``train_rows``: rows of the SFT dataset (train + val). ``overrides``:
    ``key=value`` for the ``recipe`` (``trl.max_steps=20``). ``batch_size`` / ``max_steps``: episodes
    stepped together and steps before the forced finish, as ``reactlab run``'s. ``seed``: which
    rows are sampled. ``grpo_minutes``: > 0 adds the GRPO stages (``grpo-data``, ``grpo`` from the SFT
    adapter, ``grpo-finetuned`` as a third row) with
    ``grpo_overrides`` (``key=value``) for their recipe. ``index``: an open ``WikiIndex`` (default: the vendored corpus's). ``log``:
    called with one line per stage. Bad options raise ``ValueError`` (``ConfigError`` for the recipe),
    inconsistent outputs ``DataError``, before any stage runs.
    """
    demo = Demo(Path(out), model, n, train_rows, tuple(overrides), find_recipe(recipe), batch_size, max_steps, seed,
                grpo_minutes, tuple(grpo_overrides))
    say = log or (lambda _line: None)
    cfg = check(demo)
    grpo = check_grpo(demo)
    stages: dict[str, str] = {}
    own_index = index is None
    if index is None:
        from reactlab.wiki.index import get_index

        index = get_index()
    try:
        stages["baseline"] = _run_stage(demo, "baseline", index, progress, say,
                                        f"[1/5] baseline: few-shot ReAct, {model}, first {n} eval questions")
        stages["oracle-train"] = _run_stage(demo, "oracle-train", index, progress, say,
                                            "[2/5] oracle: gold trajectories on the HotpotQA train pool")
        stages["data"] = _data_stage(demo, say)
        stages["adapter"] = _train_stage(cfg, say)
        stages["finetuned"] = _run_stage(demo, "finetuned", index, progress, say,
                                         f"[5/5] fine-tuned: {model} + LoRA adapter, zero-shot chat, same {n} questions")
        if grpo is not None:
            stages["grpo-data"] = _grpo_data_stage(demo, say)
            stages["grpo"] = _grpo_stage(grpo, say)
            stages["grpo-finetuned"] = _run_stage(demo, "grpo-finetuned", index, progress, say,
                                                  f"[8/8] GRPO: {model} + SFT + GRPO adapter, same {n} questions")
    finally:
        if own_index:
            index.close()
    from reactlab.demo_report import render_report, table_rows

    rows = table_rows(demo.out, model, demo.arms)
    report = render_report(demo.out, model, rows, cfg, commands(demo), grpo=bool(demo.grpo_minutes))
    write_text_atomic(demo.out / "report.md", report)
    from reactlab.viewer import build_report

    page = build_report([demo.dir(stage) for stage, _ in demo.arms], demo.out / "report.html",
                        title=f"reactlab demo: {model}, {n} HotpotQA eval questions")
    say(f"report: {demo.out / 'report.md'}; browse the trajectories in {page}")
    return DemoResult(demo.out, rows, stages, report)


# --- checks, all before the first stage ----------------------------------------------------------


def check(demo: Demo) -> SFTRecipe:
    """Validate the options, load the recipe, and check every existing stage output against them;
    return the SFT recipe. ``ValueError`` / ``ConfigError`` for bad options, ``DataError`` for an
    output made from other inputs."""
    from reactlab.models import NAMED, parse_model
    from reactlab.tasks.hotpotqa import HotpotQA

    for name, value in (("--n", demo.n), ("--train-rows", demo.train_rows), ("--batch-size", demo.batch_size),
                        ("--max-steps", demo.max_steps)):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    n_eval = len(HotpotQA().examples("eval"))
    if demo.n > n_eval:
        raise ValueError(f"--n {demo.n}: the HotpotQA eval split has {n_eval} questions")
    if not parse_model(demo.model).local:
        raise ValueError(f"--model {demo.model!r}: the demo fine-tunes its model, so it must be a named model "
                         f"({', '.join(sorted(NAMED))}) or hf:PATH_OR_ID, not an API or scripted model")
    for spec in demo.overrides:
        if "=" not in spec:
            raise ValueError(f"-c {spec!r}: the demo takes KEY=VALUE overrides of the recipe (--recipe FILE "
                             "for another recipe)")
        key, _ = split_key_value(spec, "-c")
        if key in OWNED:
            raise ValueError(f"-c {spec!r}: the demo sets {key} itself (the adapter goes to OUT/adapter, the data "
                             "is OUT/data, the model is --model); use --out / --model")
    if not demo.recipe.is_file():
        raise FileNotFoundError(f"{demo.recipe}: no such recipe (pass --recipe FILE, or a packaged recipe name: "
                                f"{', '.join(sorted(p.stem for p in recipes_dir().glob('*.yaml')))})")
    cfg = load_config(SFTRecipe, [demo.recipe], demo.recipe_overrides())
    if cfg.method not in ("lora", "qlora"):
        raise ValueError(f"{demo.recipe}: method {cfg.method!r}: the demo evaluates a LoRA adapter (method lora or "
                         "qlora); evaluate a full fine-tune with `reactlab run --model hf:DIR`")
    from reactlab.train.policy import check_method
    from reactlab.train.sft import check_trl_keys

    check_method(cfg.method, cfg.model.name)
    check_trl_keys(cfg.trl)
    _check_outputs(demo, cfg)
    return cfg


def check_grpo(demo: Demo) -> GRPORecipe | None:
    """The GRPO stages' recipe (None when ``grpo_minutes`` is 0), checked like the SFT one."""
    if demo.grpo_minutes < 0:
        raise ValueError(f"--grpo-minutes must be >= 0, got {demo.grpo_minutes:g}")
    if not demo.grpo_minutes:
        if demo.grpo_overrides:
            raise ValueError("--grpo-config sets the GRPO stage's recipe: give --grpo-minutes M (> 0) to run it")
        return None
    for spec in demo.grpo_overrides:
        key, _ = split_key_value(spec, "--grpo-config")
        if key in (*OWNED, "model.adapter", "max_minutes"):
            raise ValueError(f"--grpo-config {spec!r}: the demo sets {key} itself (--out, --model, --grpo-minutes)")
    cfg = load_config(GRPORecipe, [GRPO_RECIPE], demo.grpo_recipe_overrides())
    from reactlab.train.grpo import grpo_config

    grpo_config(cfg)  # TRL's own argument check, before any stage runs
    grpo = demo.dir("grpo")
    if _adapter_done(grpo):
        info = json.loads((grpo / TRAINING_FILE).read_text())
        _refuse(grpo, differences(_flat(info.get("recipe", {})), _flat(cfg.model_dump(mode="json")),
                                  ignore=("out", "data.path")))
    elif (demo.dir("grpo-finetuned") / "trajectories.jsonl").is_file():
        raise DataError(f"{demo.dir('grpo-finetuned')}: holds trajectories of an earlier GRPO adapter, and {grpo} is "
                        f"about to be trained anew; remove {demo.dir('grpo-finetuned')}")
    _check_run_stage(demo, "grpo-finetuned")
    return cfg


def _check_outputs(demo: Demo, cfg: SFTRecipe) -> None:
    """``DataError`` when an existing stage output was made from other inputs (module docstring)."""
    for stage in ("baseline", "oracle-train"):
        _check_run_stage(demo, stage)
    stats_file = demo.dir("data") / "stats.json"
    if stats_file.is_file():
        from reactlab.data.sources import split_name

        stats, opts = json.loads(stats_file.read_text()), demo.data_options()
        old = {"format": stats.get("format"), "sources": sorted(stats.get("sources", {})),
               "max_rows": stats.get("options", {}).get("max_rows"), "seed": stats.get("options", {}).get("seed"),
               "grounded": stats.get("options", {}).get("grounded", False)}
        want = {"format": opts["format"], "sources": sorted(split_name(s)[0] for s in opts["sources"]),
                "max_rows": demo.train_rows, "seed": demo.seed,
                "grounded": opts["grounded"]}
        _refuse(demo.dir("data"), differences(old, want))
    adapter = demo.dir("adapter")
    if _adapter_done(adapter):
        info = json.loads((adapter / TRAINING_FILE).read_text())
        _refuse(adapter, differences(_flat(info.get("recipe", {})), _flat(cfg.model_dump(mode="json")),
                                     ignore=("out", "data.path")))
        from reactlab.io import files_sha256

        data = [demo.dir("data") / f for f in (cfg.data.train_file, cfg.data.val_file) if f]
        # no data/ yet: it is rebuilt from the same options, byte for byte (seeded), before it is used
        if stats_file.is_file() and info.get("data", {}).get("sha256") != files_sha256(p for p in data if p.is_file()):
            raise DataError(f"{adapter}: was trained on other data than {demo.dir('data')} holds now; "
                            f"remove {adapter} (and {demo.dir('finetuned')}) to train again")
    elif (demo.dir("finetuned") / "trajectories.jsonl").is_file() and \
            (demo.dir("finetuned") / "trajectories.jsonl").stat().st_size:
        raise DataError(f"{demo.dir('finetuned')}: holds trajectories of an earlier adapter, and {adapter} is about "
                        f"to be trained anew; remove {demo.dir('finetuned')}")
    _check_run_stage(demo, "finetuned")


def _check_run_stage(demo: Demo, stage: str) -> None:
    """The runner's own resume check of a run stage, made early: its identity but for the content
    hashes of files that a later stage may still write (the adapter)."""
    from reactlab.runner import RUN_FILE, plan_run, spec_differences

    if (demo.dir(stage) / RUN_FILE).is_file():
        spec = plan_run(demo.run_config(stage), hashes=False).spec
        _refuse(demo.dir(stage), spec_differences(demo.dir(stage), spec, hashes=False))


# --- the stages ----------------------------------------------------------------------------------


def _run_stage(demo: Demo, stage: str, index: Any, progress: bool, say: Callable[[str], None], title: str) -> str:
    """A ``reactlab run`` stage: skipped when its summary covers all its examples, else run (resumed
    by example id when trajectories are there)."""
    from reactlab.runner import run_from_config

    path = demo.dir(stage)
    summary_file = path / "summary.json"
    if summary_file.is_file() and Summary.read(summary_file).n == _n_examples(demo, stage):
        say(f"{title} -> {path}: done, skipped")
        return "skipped"
    traj = path / "trajectories.jsonl"
    resumed = traj.is_file() and traj.stat().st_size > 0
    say(f"{title} -> {path}" + (" (resuming)" if resumed else ""))
    run_from_config(demo.run_config(stage), index=index, progress=progress)
    gc.collect()  # the stage's model is garbage now; free it before the next one loads
    return "resumed" if resumed else "ran"


def _n_examples(demo: Demo, stage: str) -> int:
    if stage == "oracle-train":
        from reactlab.tasks.hotpotqa import HotpotQA

        return len(HotpotQA().examples("train"))
    return demo.n


def _data_stage(demo: Demo, say: Callable[[str], None]) -> str:
    """``reactlab data build``: skipped when ``stats.json`` (written last) is there; ``check`` made
    sure it was built from these options."""
    from reactlab.data.build import build_dataset

    opts = demo.data_options()
    title = f"[3/5] data: {len(opts['sources'])} sources, eval questions dropped, at most {demo.train_rows} rows"
    if (opts["out"] / "stats.json").is_file():
        say(f"{title} -> {opts['out']}: done, skipped")
        return "skipped"
    say(f"{title} -> {opts['out']}")
    sources = opts.pop("sources")
    build_dataset(sources, **opts)
    return "ran"


def _grpo_data_stage(demo: Demo, say: Callable[[str], None]) -> str:
    """``reactlab data build --format prompts`` from the oracle's train trajectories (eval questions
    dropped); skipped when ``stats.json`` is there."""
    from reactlab.data.build import build_dataset

    out = demo.dir("grpo-data")
    title = "[6/8] GRPO prompts: the oracle's train questions with their answers, eval questions dropped"
    if (out / "stats.json").is_file():
        say(f"{title} -> {out}: done, skipped")
        return "skipped"
    say(f"{title} -> {out}")
    build_dataset([str(demo.dir("oracle-train"))], out, "prompts", seed=demo.seed, tokenizer=None)
    return "ran"


def _grpo_stage(cfg: GRPORecipe, say: Callable[[str], None]) -> str:
    """``reactlab train grpo`` from the SFT adapter, at most ``max_minutes``."""
    from reactlab.train.grpo import train_grpo

    return _train_stage(cfg, say, f"[7/8] GRPO of {cfg.model.name} + SFT adapter, at most {cfg.max_minutes:g} min",
                        train_grpo)


def _train_stage(cfg: SFTRecipe | GRPORecipe, say: Callable[[str], None], title: str = "",
                 train: Callable[..., Any] | None = None) -> str:
    return train_stage(cfg, say, title or f"[4/5] LoRA SFT of {cfg.model.name}", train)


ARMS = (("baseline", "few-shot ReAct"), ("finetuned", "LoRA SFT, zero-shot chat"))


def commands(demo: Demo) -> list[str]:
    """The ``reactlab`` commands each stage is, in order, then the one demo command that chains them."""

    def run_cmd(stage: str) -> str:
        cfg = demo.run_config(stage)
        args = ["reactlab", "run"]
        if cfg.model is not None:
            args += ["--model", cfg.model.name] + (["--adapter", cfg.model.adapter] if cfg.model.adapter else [])
        for k, v in cfg.model_dump(exclude_unset=True, exclude={"out", "model"}).items():
            args += [f"--{k.replace('_', '-')}", str(v)]
        return shlex.join([*args, "--out", cfg.out])

    data = demo.data_options()
    build = ["reactlab", "data", "build", *(x for s in data["sources"] for x in ("--from", s)), "--format",
             data["format"], *(["--grounded"] if data["grounded"] else []), "--max-rows", str(data["max_rows"]), "--seed", str(data["seed"]), "--tokenizer",
             data["tokenizer"], "--out", str(data["out"])]
    train = ["reactlab", "train", "sft", "-c", _shown(demo.recipe), *(x for o in demo.recipe_overrides() for x in ("-c", o))]
    one = ["reactlab", "demo", "--out", str(demo.out), "--n", str(demo.n), "--train-rows", str(demo.train_rows),
           "--seed", str(demo.seed), "--batch-size", str(demo.batch_size), "--max-steps", str(demo.max_steps)]
    if demo.model != "smollm2":
        one += ["--model", demo.model]
    if demo.recipe != DEFAULT_RECIPE:
        one += ["--recipe", str(demo.recipe)]
    one += [x for o in demo.overrides for x in ("-c", o)]
    grpo: list[str] = []
    if demo.grpo_minutes:
        one += ["--grpo-minutes", f"{demo.grpo_minutes:g}", *(x for o in demo.grpo_overrides for x in ("--grpo-config", o))]
        grpo = ["# 5. GRPO from the SFT adapter (wiki in the loop), then the same questions",
                shlex.join(["reactlab", "data", "build", "--from", str(demo.dir("oracle-train")), "--format", "prompts",
                            "--seed", str(demo.seed), "--tokenizer", "none", "--out", str(demo.dir("grpo-data"))]),
                shlex.join(["reactlab", "train", "grpo", "-c", _shown(GRPO_RECIPE),
                            *(x for o in demo.grpo_recipe_overrides() for x in ("-c", o))]),
                run_cmd("grpo-finetuned")]
    return [
        "# 1. baseline: few-shot ReAct", run_cmd("baseline"),
        "# 2. oracle trajectories on the train pool, then the SFT data (eval and paper500 questions dropped)",
        run_cmd("oracle-train"), shlex.join(build),
        "# 3. LoRA SFT (add --resume to continue from a checkpoint)", shlex.join(train),
        "# 4. the adapter, zero-shot, chat layout", run_cmd("finetuned"), *grpo,
        "# all of it (each stage skipped when done)", shlex.join(one),
    ]


def _shown(path: Path) -> str:
    """A path relative to the working directory when it is under it (shorter commands)."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)
