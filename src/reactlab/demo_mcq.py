"""``reactlab demo --task logic_mcq``: the Answer -> Evaluate loop without a teacher, in one command.

The base pipeline on the eval split; the base Answer agent sampled ``k`` times per train question;
Answer rows by rejection sampling (gold letter, a last step that does not contradict it) and
Evaluate rows from gold (each sample as the Evaluate input, ``答案是:<gold>`` the target, balanced
per option count); one LoRA SFT per role; then the trained roles on the same eval questions, and
with ``transfer_n`` the base pipeline and the same arms on that many MMLU eval questions (a seeded
sample, English prompts: whether roles trained on Chinese logic transfer). Each
stage is one ``reactlab`` command run in process into ``OUT/<stage>`` and skipped when its output is
complete, so a rerun resumes; an existing output made from other inputs is refused before any
stage runs, as in ``reactlab.demo`` (whose helpers this module shares).
"""

from __future__ import annotations

import gc
import json
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reactlab.config import ModelRef, RunConfig, find_recipe, load_config, split_key_value
from reactlab.demo import OWNED, _adapter_done, _flat, _refuse, _shown, _train_stage
from reactlab.demo_report import ARMS, ROLES
from reactlab.io import DataError, write_text_atomic
from reactlab.paths import recipes_dir
from reactlab.report import Summary
from reactlab.runner import differences
from reactlab.train.recipes import SFTRecipe
from reactlab.train.record import TRAINING_FILE

TASK = "logic_mcq"
TRANSFER = "mmlu"
"""The task of the transfer arms (``--transfer-n``): their stages are ``mmlu-<stage>``."""
MCQ_RECIPE = recipes_dir() / "sft_gemma3_270m_lora.yaml"
# Small role sets (a few hundred rows): checkpoints every 10 updates so a killed training resumes.
MCQ_OVERRIDES = ("trl.save_steps=10", "trl.eval_steps=10")


@dataclass(frozen=True)
class MCQDemo:
    """One logic_mcq demo's options and its stage directories under ``out``."""

    out: Path
    model: str = "gemma3-270m"
    n: int | None = None
    train_n: int = 120
    k: int = 4
    temperature: float = 0.7
    overrides: tuple[str, ...] = ()
    recipe: Path = MCQ_RECIPE
    batch_size: int = 32
    seed: int = 0
    transfer_n: int = 0

    def dir(self, stage: str) -> Path:
        return self.out / stage

    def transfer_stages(self) -> list[str]:
        """The run stages on the transfer task (the base pipeline, then the arms); none unless asked."""
        return [f"{TRANSFER}-{s}" for s in ("base", *(s for s, _ in ARMS))] if self.transfer_n else []

    def run_config(self, stage: str) -> RunConfig:
        """The ``reactlab run`` options of a run stage (adapters on their role's model only)."""
        out, base = str(self.dir(stage)), ModelRef(name=self.model)
        transfer = stage.startswith(f"{TRANSFER}-")
        common: dict[str, Any] = {"out": out, "task": TRANSFER if transfer else TASK, "agent": "pipeline",
                                  "batch_size": self.batch_size}
        evaluation = {**common, "split": "eval", "limit": self.n}
        if transfer:
            evaluation |= {"limit": self.transfer_n, "seed": self.seed}
            stage = stage.removeprefix(f"{TRANSFER}-")
        if stage == "base":
            return RunConfig(**evaluation, model=base)
        if stage == "samples":
            return RunConfig.model_validate({**common, "split": "train", "limit": self.train_n, "seed": self.seed,
                                             "method": "answer", "model": base, "options": {"pipeline": {
                                                 "samples": self.k, "temperature": self.temperature}}})
        tuned = {r: ModelRef(name=self.model, adapter=str(self.dir(f"adapter-{r}"))) for r in ROLES}
        if stage == "evaluate-trained":  # the base Answer keeps its exemplars; the adapter runs zero-shot
            return RunConfig.model_validate({**evaluation, "roles": {"answer": base, "evaluate": tuned["evaluate"]},
                                             "options": {"pipeline": {"zeroshot": ["evaluate"]}}})
        if stage == "answer-trained":
            return RunConfig(**evaluation, method="answer", prompt="zeroshot", model=tuned["answer"])
        if stage == "both-trained":
            return RunConfig(**evaluation, prompt="zeroshot", roles=tuned)
        raise KeyError(stage)

    def data_options(self, role: str) -> dict[str, Any]:
        """``build_dataset`` keywords of a role's data stage (eval questions are dropped by default)."""
        return {"sources": [str(self.dir("samples"))], "out": self.dir(f"data-{role}"), "format": "messages",
                "role": "evaluate_gold" if role == "evaluate" else "answer", "seed": self.seed, "tokenizer": None}

    def recipe_overrides(self, role: str) -> list[str]:
        return [f"out={self.dir(f'adapter-{role}')}", f"data.path={self.dir(f'data-{role}')}",
                f"model.name={self.model}", *MCQ_OVERRIDES, *self.overrides]


@dataclass
class MCQResult:
    """What ``run_mcq_demo`` returns: what each stage did (``ran`` | ``resumed`` | ``skipped``) and
    the report's markdown (also in ``out/report.md``)."""

    out: Path
    stages: dict[str, str]
    report: str


def run_mcq_demo(
    out: str | Path = "runs/demo-mcq",
    *,
    model: str = "gemma3-270m",
    n: int | None = None,
    train_n: int = 120,
    k: int = 4,
    temperature: float = 0.7,
    overrides: Sequence[str] = (),
    recipe: str | Path = MCQ_RECIPE,
    batch_size: int = 32,
    seed: int = 0,
    transfer_n: int = 0,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> MCQResult:
    """Run the stages into ``out`` (base, samples, data-answer, data-evaluate, adapter-answer,
    adapter-evaluate, then the trained arms; each skipped when done) and write ``out/report.md``.

    ``model``: a model this machine fine-tunes (``gemma3-270m``, ``hf:PATH``). ``n``: eval questions
    per arm (None: all). ``train_n``: train questions sampled (seeded with ``seed``), ``k`` Answer
    samples each at ``temperature``. ``overrides``: ``key=value`` for the SFT ``recipe`` (both roles).
    Bad options raise ``ValueError``, outputs made from other inputs ``DataError``, before any stage runs.
    """
    demo = MCQDemo(Path(out), model, n, train_n, k, temperature, tuple(overrides), find_recipe(recipe), batch_size,
                   seed, transfer_n)
    say = log or (lambda _line: None)
    cfgs = check_mcq(demo)
    stages: dict[str, str] = {}
    transfer = demo.transfer_stages()
    total = 6 + len(ARMS) + len(transfer)
    stages["base"] = _run(demo, "base", progress, say, f"[1/{total}] base pipeline (Answer -> Evaluate), {model}")
    stages["samples"] = _run(demo, "samples", progress, say,
                             f"[2/{total}] base Answer agent, {k} samples per train question, {train_n} questions")
    for i, role in enumerate(ROLES):
        stages[f"data-{role}"] = _data(demo, role, say, f"[{3 + i}/{total}] {role} rows")
    for i, role in enumerate(ROLES):
        stages[f"adapter-{role}"] = _train_stage(cfgs[role], say, f"[{5 + i}/{total}] LoRA SFT of the {role} role")
    for i, (stage, what) in enumerate(ARMS):
        stages[stage] = _run(demo, stage, progress, say, f"[{7 + i}/{total}] {what}")
    for i, stage in enumerate(transfer):
        stages[stage] = _run(demo, stage, progress, say, f"[{7 + len(ARMS) + i}/{total}] {stage}: "
                                                         f"{demo.transfer_n} {TRANSFER} eval questions")
    from reactlab.demo_report import render_mcq_report

    report = render_mcq_report(demo.out, model, mcq_commands(demo), transfer=TRANSFER if transfer else None)
    write_text_atomic(demo.out / "report.md", report)
    say(f"report: {demo.out / 'report.md'}")
    return MCQResult(demo.out, stages, report)


def check_mcq(demo: MCQDemo) -> dict[str, SFTRecipe]:
    """Validate the options and every existing stage output; return each role's SFT recipe."""
    from reactlab.models import NAMED, parse_model
    from reactlab.tasks import make_task
    from reactlab.train.policy import check_method
    from reactlab.train.sft import check_trl_keys

    for name, value in (("--n", demo.n or 1), ("--train-n", demo.train_n), ("--k", demo.k),
                        ("--batch-size", demo.batch_size)):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    if demo.transfer_n < 0:
        raise ValueError(f"--transfer-n must be >= 0 (0: no transfer arms), got {demo.transfer_n}")
    if demo.k < 2:
        raise ValueError(f"--k {demo.k}: rejection sampling needs at least 2 samples per question")
    task = make_task(TASK)
    n_eval, n_train = len(task.examples("eval")), len(task.examples("train"))
    if demo.n is not None and demo.n > n_eval:
        raise ValueError(f"--n {demo.n}: the {TASK} eval split has {n_eval} questions")
    if demo.train_n > n_train:
        raise ValueError(f"--train-n {demo.train_n}: the {TASK} train split has {n_train} questions")
    if demo.transfer_n > (n_transfer := len(make_task(TRANSFER).examples("eval"))):
        raise ValueError(f"--transfer-n {demo.transfer_n}: the {TRANSFER} eval split has {n_transfer} questions")
    if not parse_model(demo.model).local:
        raise ValueError(f"--model {demo.model!r}: the demo fine-tunes its model, so it must be a named model "
                         f"({', '.join(sorted(NAMED))}) or hf:PATH_OR_ID")
    for spec in demo.overrides:
        key, _ = split_key_value(spec, "-c")
        if key in OWNED:
            raise ValueError(f"-c {spec!r}: the demo sets {key} itself (--out, --model)")
    if not demo.recipe.is_file():
        raise FileNotFoundError(f"{demo.recipe}: no such recipe")
    cfgs = {r: load_config(SFTRecipe, [demo.recipe], demo.recipe_overrides(r)) for r in ROLES}
    for cfg in cfgs.values():
        if cfg.method not in ("lora", "qlora"):
            raise ValueError(f"{demo.recipe}: method {cfg.method!r}: the demo trains a LoRA adapter per role")
        check_method(cfg.method, cfg.model.name)
        check_trl_keys(cfg.trl)
    for stage in ("base", "samples"):
        _check_run(demo, stage)
    for role in ROLES:
        stats_file = demo.dir(f"data-{role}") / "stats.json"
        if stats_file.is_file():
            stats = json.loads(stats_file.read_text())
            want = demo.data_options(role)
            _refuse(demo.dir(f"data-{role}"), differences(
                {"role": stats.get("role"), "format": stats.get("format"), "seed": stats["options"].get("seed")},
                {"role": want["role"], "format": want["format"], "seed": want["seed"]}))
        adapter = demo.dir(f"adapter-{role}")
        if _adapter_done(adapter):
            info = json.loads((adapter / TRAINING_FILE).read_text())
            _refuse(adapter, differences(_flat(info.get("recipe", {})), _flat(cfgs[role].model_dump(mode="json")),
                                         ignore=("out", "data.path")))
    for stage in [s for s, _ in ARMS] + demo.transfer_stages():  # the base stages name no role: none trained
        trained = [r for r in ROLES if r in stage or stage.endswith("both-trained")]
        if any(not _adapter_done(demo.dir(f"adapter-{r}")) for r in trained) and \
                (demo.dir(stage) / "trajectories.jsonl").is_file():
            raise DataError(f"{demo.dir(stage)}: holds trajectories of an earlier adapter that is about to be "
                            f"trained anew; remove {demo.dir(stage)}")
        _check_run(demo, stage)
    return cfgs


def _check_run(demo: MCQDemo, stage: str) -> None:
    from reactlab.runner import RUN_FILE, plan_run, spec_differences

    if (demo.dir(stage) / RUN_FILE).is_file():
        spec = plan_run(demo.run_config(stage), hashes=False).spec
        _refuse(demo.dir(stage), spec_differences(demo.dir(stage), spec, hashes=False))


def _run(demo: MCQDemo, stage: str, progress: bool, say: Callable[[str], None], title: str) -> str:
    """A ``reactlab run`` stage: skipped when its summary covers all its examples, else run (resumed)."""
    from reactlab.runner import plan_run, run_from_config

    cfg = demo.run_config(stage)
    path, want = demo.dir(stage), len(plan_run(cfg, hashes=False).examples)
    if (path / "summary.json").is_file() and Summary.read(path / "summary.json").n == want:
        say(f"{title} -> {path}: done, skipped")
        return "skipped"
    traj = path / "trajectories.jsonl"
    resumed = traj.is_file() and traj.stat().st_size > 0
    say(f"{title} -> {path}" + (" (resuming)" if resumed else ""))
    run_from_config(cfg, progress=progress)
    gc.collect()
    return "resumed" if resumed else "ran"


def _data(demo: MCQDemo, role: str, say: Callable[[str], None], title: str) -> str:
    from reactlab.data.build import build_dataset

    opts = demo.data_options(role)
    if (opts["out"] / "stats.json").is_file():
        say(f"{title} -> {opts['out']}: done, skipped")
        return "skipped"
    say(f"{title} -> {opts['out']}")
    build_dataset(opts.pop("sources"), **opts)
    return "ran"


def mcq_commands(demo: MCQDemo) -> list[str]:
    """The ``reactlab`` commands each stage is, in order, then the one demo command."""

    def run_cmd(stage: str) -> str:
        cfg = demo.run_config(stage)
        args = ["reactlab", "run", "--task", cfg.task, "--agent", "pipeline"]
        if cfg.model is not None:
            args += ["--model", cfg.model.name, *(["--adapter", cfg.model.adapter] if cfg.model.adapter else [])]
        for role, ref in sorted(cfg.roles.items()):
            args += ["--model", f"{role}={ref.name}", *(["--adapter", f"{role}={ref.adapter}"] if ref.adapter else [])]
        for k, v in cfg.model_dump(exclude_unset=True, exclude={"out", "model", "roles", "task", "agent",
                                                                "options"}).items():
            if v is not None:
                args += [f"--{k.replace('_', '-')}", str(v)]
        pipe = cfg.options.pipeline
        if pipe.samples > 1:
            args += ["-c", f"answer_samples={pipe.samples}", "-c", f"answer_temperature={pipe.temperature}"]
        if pipe.zeroshot:
            args += ["-c", f"options.pipeline.zeroshot=[{','.join(pipe.zeroshot)}]"]
        return shlex.join([*args, "--out", cfg.out])

    def build(role: str) -> str:
        d = demo.data_options(role)
        return shlex.join(["reactlab", "data", "build", "--from", d["sources"][0], "--role", d["role"], "--format",
                           d["format"], "--seed", str(d["seed"]), "--tokenizer", "none", "--out", str(d["out"])])

    def train(role: str) -> str:
        return shlex.join(["reactlab", "train", "sft", "-c", _shown(demo.recipe),
                           *(x for o in demo.recipe_overrides(role) for x in ("-c", o))])

    one = ["reactlab", "demo", "--task", TASK, "--out", str(demo.out), "--model", demo.model, "--train-n",
           str(demo.train_n), "--k", str(demo.k), "--seed", str(demo.seed), "--batch-size", str(demo.batch_size)]
    one += (["--n", str(demo.n)] if demo.n else []) + [x for o in demo.overrides for x in ("-c", o)]
    one += ["--transfer-n", str(demo.transfer_n)] if demo.transfer_n else []
    transfer = demo.transfer_stages()
    return ["# 1. the base pipeline on the eval split", run_cmd("base"),
            "# 2. the base Answer agent sampled on train questions", run_cmd("samples"),
            "# 3. role rows: Answer by rejection sampling, Evaluate from gold (eval questions dropped)",
            build("answer"), build("evaluate"),
            "# 4. one LoRA SFT per role", train("answer"), train("evaluate"),
            "# 5. the trained roles on the same eval questions", *(run_cmd(s) for s, _ in ARMS),
            *([f"# 6. the base pipeline and the trained roles on {demo.transfer_n} {TRANSFER} eval questions",
               *(run_cmd(s) for s in transfer)] if transfer else []),
            "# all of it (each stage skipped when done)", shlex.join(one)]
