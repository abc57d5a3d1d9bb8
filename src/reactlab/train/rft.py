"""``reactlab train rft``: rejection-sampling fine-tuning (expert iteration), the baseline every RL arm
must beat: sample episodes from the SFT adapter, keep the correct grounded ones, train again.

Read top to bottom, ``run_rft`` is (every stage writes ``OUT/round-R/<stage>`` and is skipped when
its output is complete, so a rerun resumes; a cut training continues from its checkpoint: the
stages of ``reactlab.train.stages``, as in ``reactlab.demo``):

0. ``questions``: HotpotQA's train pool without any task's evaluation questions, shuffled with
   ``seed``: ``heldout.jsonl`` (the first ``heldout``) and ``pool.jsonl`` (the next ``questions``);
   ``round-0/data``: the original SFT rows without evaluation or held-out questions;
   ``round-0/adapter`` (unless the recipe names an ``adapter``); ``round-0/heldout``;
1. round R: ``samples`` (``k`` sampled episodes per pool question from adapter R-1) -> ``data``
   (round 0's rows + the correct, grounded episodes, the ``data build`` filter; identical rows
   once) -> ``adapter`` (SFT) -> ``heldout`` (greedy, the held-out questions) -> ``rft.json``.

Deliberate deviation from ``data build``: it keeps one row per question; RFT keeps every distinct
correct episode of a question (distinct reasoning paths are the point of sampling ``k``).
Each round trains from the base model by default, as STaR and ReST-EM do: a round's adapter is a
function of its rows alone, so rounds differ only in what was sampled and an adapter's mistakes do
not compound; ``init: previous`` continues the last adapter instead. Every input is checked, and
``OUT/recipe.json`` compared, before the first stage runs: an output made from other inputs is an
error naming the difference, never silently reused.
"""

from __future__ import annotations

import gc
import json
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reactlab.config import ModelRef, RunConfig, find_recipe, load_config, split_key_value
from reactlab.data.formats import to_row
from reactlab.data.select import Selection, drop_reason, excluded_questions, normalize_question, split_of
from reactlab.data.sources import Sample, load_source
from reactlab.io import DataError, files_sha256, read_records, write_json_atomic, write_jsonl_atomic
from reactlab.report import Summary
from reactlab.runner import SUMMARY_FILE, TRAJ_FILE, differences
from reactlab.train.recipes import RFTRecipe, SFTRecipe
from reactlab.train.record import TRAINING_FILE
from reactlab.train.stages import adapter_done, flat, refuse, train_stage
from reactlab.types import DEFAULT_ROLE

if TYPE_CHECKING:
    from reactlab.types import LLM

OWNED = ("out", "model.adapter")  # the SFT recipe keys each round sets itself
VAL_FRAC = 0.05  # new rows' share of val questions when the original rows' stats.json does not say
STATS = "stats.json"


@dataclass
class RFTResult:
    """What ``run_rft`` returns: one summary per round (``round-R/rft.json``; round 0 is the starting
    adapter) and what each stage did (``ran`` | ``resumed`` | ``skipped``)."""

    out: Path
    rounds: list[dict[str, Any]]
    stages: dict[str, str] = field(default_factory=dict)


def run_rft(cfg: RFTRecipe, *, index: Any = None, llm: Callable[[ModelRef], LLM] | None = None,
            progress: bool = True, log: Callable[[str], None] | None = None) -> RFTResult:
    """Run the stages into ``cfg.out`` (module docstring) and write ``OUT/rft.json``.

    ``index``: an open ``WikiIndex`` (default: the vendored corpus's). ``llm``: builds the sampler
    of a ``ModelRef`` (tests); default: the model itself, with the adapter. ``log``: one line per
    stage. Bad options raise ``ValueError`` (``ConfigError`` for the SFT recipe), outputs made
    from other inputs ``DataError``, before any stage runs.
    """
    say = log or (lambda _line: None)
    sft = check(cfg)
    out = Path(cfg.out)
    res = RFTResult(out, [])
    opened: list[Any] = []  # the index we open, the first time a run stage needs one

    def wiki() -> Any:
        if index is not None:
            return index
        if not opened:
            from reactlab.wiki.index import get_index

            opened.append(get_index())
        return opened[0]

    def run_stage(stage: str, run: RunConfig, n: int, title: str) -> None:
        res.stages[stage] = _run_stage(run, n, wiki, llm, progress, say, f"{stage}: {title}")

    try:
        pool, heldout = _questions_stage(cfg, say)
        res.stages["round-0/data"] = _start_data_stage(cfg, sft, heldout, say)
        adapter = Path(cfg.adapter) if cfg.adapter else _dir(cfg, 0, "adapter")
        if not cfg.adapter:
            res.stages["round-0/adapter"] = train_stage(_round_recipe(cfg, sft, 0), say,
                                                         f"round-0/adapter: SFT of {sft.model.name}")
        if cfg.heldout:
            run_stage("round-0/heldout", _heldout_run(cfg, sft, adapter, 0), cfg.heldout,
                      f"{cfg.heldout} held-out train-pool questions, greedy")
        res.rounds.append(_summary(cfg, 0, adapter))
        for r in range(1, cfg.rounds + 1):
            run_stage(f"round-{r}/samples", _samples_run(cfg, sft, adapter, r, pool), cfg.questions * cfg.k,
                      f"{cfg.k} episodes at temperature {cfg.temperature:g} per question, {cfg.questions} questions")
            res.stages[f"round-{r}/data"] = _round_data_stage(cfg, r, heldout, say)
            previous, adapter = adapter, _dir(cfg, r, "adapter")
            res.stages[f"round-{r}/adapter"] = train_stage(_round_recipe(cfg, sft, r, previous), say,
                                                            f"round-{r}/adapter: SFT of {sft.model.name}")
            if cfg.heldout:
                run_stage(f"round-{r}/heldout", _heldout_run(cfg, sft, adapter, r), cfg.heldout,
                          f"{cfg.heldout} held-out train-pool questions, greedy")
            res.rounds.append(_summary(cfg, r, adapter, previous))
    finally:
        for own in opened:
            own.close()
    write_json_atomic(out / "rft.json", {"recipe": cfg.model_dump(mode="json"), "rounds": res.rounds})
    return res


# --- checks, all before the first stage ----------------------------------------------------------


def check(cfg: RFTRecipe) -> SFTRecipe:
    """The SFT recipe as loaded (the rounds set ``OWNED``), after checking every option, the original
    rows and ``OUT/recipe.json`` (written here)."""
    from reactlab.models import parse_model
    from reactlab.tasks.hotpotqa import HotpotQA
    from reactlab.train.policy import check_method
    from reactlab.train.sft import check_trl_keys

    for spec in cfg.sft_overrides:
        key, _ = split_key_value(spec, "sft_overrides")
        if key in OWNED:
            raise ValueError(f"sft_overrides {spec!r}: RFT sets {key} itself (out: OUT/round-R/adapter, "
                             "model.adapter: from the RFT recipe's adapter and init)")
    recipe = find_recipe(cfg.sft)
    sft = load_config(SFTRecipe, [recipe], [*cfg.sft_overrides, *([f"data.path={cfg.data}"] if cfg.data else [])])
    if sft.model.adapter:
        raise ValueError(f"{recipe}: model.adapter is set; RFT starts from the base model or from its own `adapter` "
                         "key (give the SFT adapter there)")
    if sft.method not in ("lora", "qlora"):
        raise ValueError(f"{recipe}: method {sft.method!r}: RFT samples from a LoRA adapter (method lora or qlora)")
    if not parse_model(sft.model.name).local:
        raise ValueError(f"{recipe}: model {sft.model.name!r}: RFT trains its model, so it must be a local one")
    check_method(sft.method, sft.model.name)
    check_trl_keys(sft.trl)
    files = _row_files(Path(sft.data.path), sft)
    for f in files:
        for where, row in read_records(f):
            if "messages" not in row:
                raise DataError(f"{where}: RFT adds chat rows to the SFT rows, so they must be `messages` rows "
                                f"(reactlab data build --format messages); this one has {sorted(row)}")
    if cfg.adapter and not (Path(cfg.adapter) / "adapter_config.json").is_file():
        raise FileNotFoundError(f"adapter {cfg.adapter}: no adapter_config.json there (an SFT run's `out`)")
    excluded = excluded_questions()
    n_pool = sum(normalize_question(e.question) not in excluded for e in HotpotQA().examples("train"))
    if cfg.questions + cfg.heldout > n_pool:
        raise ValueError(f"questions {cfg.questions} + heldout {cfg.heldout}: the HotpotQA train pool has {n_pool} "
                         "questions that are no task's evaluation questions")
    identity = {"recipe": cfg.model_dump(mode="json"), "sft": sft.model_dump(mode="json"),
                "sft_rows_sha256": files_sha256(files),
                "adapter_sha256": files_sha256(sorted(Path(cfg.adapter).glob("adapter_*"))) if cfg.adapter else None}
    path = Path(cfg.out) / "recipe.json"
    if path.is_file():
        refuse(Path(cfg.out), differences(flat(json.loads(path.read_text())), flat(identity),
                                           ignore=("recipe.rounds",)))
    _check_stages(cfg)
    write_json_atomic(path, identity)  # rounds as given now: a later rerun may ask for more
    return sft


def _check_stages(cfg: RFTRecipe) -> None:
    """``DataError`` when a stage holds output although a stage before it is incomplete: the output
    was made from inputs that are gone (a removed adapter would be trained anew, its samples not)."""
    gap = None
    for path, done, started in _stages(cfg):
        if gap is not None and started:
            raise DataError(f"{path}: was made from an earlier {gap}, which is incomplete now; remove {path} and the "
                            "stages after it to run them again")
        if not done and gap is None:
            gap = path


def _stages(cfg: RFTRecipe) -> list[tuple[Path, bool, bool]]:
    """Every stage dir in run order, whether it is complete and whether it holds output."""

    def run(path: Path, n: int) -> tuple[Path, bool, bool]:
        summary, traj = path / SUMMARY_FILE, path / TRAJ_FILE
        done = summary.is_file() and Summary.read(summary).n == n
        return path, done, done or (traj.is_file() and traj.stat().st_size > 0)

    def made(path: Path, done: bool) -> tuple[Path, bool, bool]:
        return path, done, path.is_dir() and any(path.iterdir())

    out = [made(_dir(cfg, 0, "data"), (_dir(cfg, 0, "data") / STATS).is_file())]
    for r in range(cfg.rounds + 1):
        if r:
            out += [run(_dir(cfg, r, "samples"), cfg.questions * cfg.k),
                    made(_dir(cfg, r, "data"), (_dir(cfg, r, "data") / STATS).is_file())]
        if r or not cfg.adapter:
            out.append(made(_dir(cfg, r, "adapter"), adapter_done(_dir(cfg, r, "adapter"))))
        if cfg.heldout:
            out.append(run(_dir(cfg, r, "heldout"), cfg.heldout))
    return out


def _row_files(data: Path, sft: SFTRecipe) -> list[Path]:
    train = data / sft.data.train_file
    if not train.is_file():
        raise FileNotFoundError(f"{train}: no such file (the SFT recipe's data.path: a `reactlab data build --format "
                                "messages` dir)")
    val = data / sft.data.val_file if sft.data.val_file else None
    return [train] + ([val] if val is not None and val.is_file() else [])


# --- the stages ----------------------------------------------------------------------------------


def _dir(cfg: RFTRecipe, r: int, stage: str) -> Path:
    return Path(cfg.out) / f"round-{r}" / stage


def _questions_stage(cfg: RFTRecipe, say: Callable[[str], None]) -> tuple[Path, Path]:
    """``OUT/questions/{pool,heldout}.jsonl`` in HotpotQA's layout (``hotpotqa.load_file``), drawn
    from the train pool without evaluation questions; skipped when both are there (written last)."""
    from reactlab.tasks.hotpotqa import HotpotQA

    d = Path(cfg.out) / "questions"
    pool, heldout = d / "pool.jsonl", d / "heldout.jsonl"
    if pool.is_file() and heldout.is_file():
        say(f"questions -> {d}: done, skipped")
        return pool, heldout
    excluded = excluded_questions()
    exs = [e for e in HotpotQA().examples("train") if normalize_question(e.question) not in excluded]
    random.Random(f"{cfg.seed}:rft").shuffle(exs)

    def rec(e: Any) -> dict[str, Any]:
        return {"id": e.id, "question": e.question, "answer": e.answer, "type": e.type, **e.meta}

    write_jsonl_atomic(heldout, [rec(e) for e in exs[:cfg.heldout]])
    write_jsonl_atomic(pool, [rec(e) for e in exs[cfg.heldout:cfg.heldout + cfg.questions]])
    say(f"questions -> {d}: {cfg.heldout} held out, {cfg.questions} to sample, of {len(exs)} "
        "train-pool questions without evaluation ones")
    return pool, heldout


def _questions(path: Path) -> set[str]:
    return {normalize_question(rec["question"]) for _, rec in read_records(path)}


def _question(row: dict[str, Any]) -> str:
    """A messages row's question: its first user turn (``formats.chat_messages``)."""
    return next(m["content"] for m in row["messages"] if m["role"] == "user")


def _start_data_stage(cfg: RFTRecipe, sft: SFTRecipe, heldout: Path, say: Callable[[str], None]) -> str:
    """``round-0/data``: the original rows, each on its side (train/val), without evaluation or
    held-out questions (counted by reason); skipped when its ``stats.json`` (written last) is there."""
    out = _dir(cfg, 0, "data")
    if (out / STATS).is_file():
        say(f"round-0/data -> {out}: done, skipped")
        return "skipped"
    t0 = time.perf_counter()
    original = Path(sft.data.path)
    excluded, held = excluded_questions(), _questions(heldout)
    dropped: Counter = Counter()
    rows: dict[str, int] = {}
    for split, name in (("train", sft.data.train_file), ("val", sft.data.val_file)):
        path = original / name if name else None
        kept = []
        for _, row in read_records(path) if path is not None and path.is_file() else ():
            q = normalize_question(_question(row))
            reason = "eval_overlap" if q in excluded else "heldout" if q in held else None
            if reason:
                dropped[reason] += 1
            else:
                kept.append(row)
        write_jsonl_atomic(out / f"{split}.jsonl", kept)
        rows[split] = len(kept)
    stats_file = original / STATS
    val_frac = json.loads(stats_file.read_text()).get("options", {}).get("val_frac", VAL_FRAC) \
        if stats_file.is_file() else VAL_FRAC
    write_json_atomic(out / STATS, {"format": "messages", "source": str(original), "rows": rows,
                                    "dropped": dict(sorted(dropped.items())), "val_frac": val_frac,
                                    "wall_s": round(time.perf_counter() - t0, 2)})
    say(f"round-0/data -> {out}: {rows['train']} train + {rows['val']} val rows "
        f"(dropped: {dict(dropped) or 'none'})")
    return "ran"


def _round_data_stage(cfg: RFTRecipe, r: int, heldout: Path, say: Callable[[str], None]) -> str:
    """``round-R/data``: round 0's rows plus a ``messages`` row of every sampled episode that
    ``data build``'s filter keeps (correct, finished, grounded when ``cfg.grounded``; never an
    evaluation or held-out question), identical rows once; skipped when ``stats.json`` is there."""
    out = _dir(cfg, r, "data")
    if (out / STATS).is_file():
        say(f"round-{r}/data -> {out}: done, skipped")
        return "skipped"
    t0 = time.perf_counter()
    start = _dir(cfg, 0, "data")
    val_frac = json.loads((start / STATS).read_text())["val_frac"]
    excluded = excluded_questions() | _questions(heldout)
    sel = Selection(purpose="sft", grounded=cfg.grounded)
    episodes = load_source(f"rft-round-{r}={_dir(cfg, r, 'samples')}")
    kept: list[Sample] = []
    dropped: Counter = Counter()
    for s in episodes:
        reason = drop_reason(s, sel, excluded)
        if reason:
            dropped[reason] += 1
        else:
            kept.append(s)
    splits = {split: [row for _, row in read_records(start / f"{split}.jsonl")] for split in ("train", "val")}
    seen = {_key(row) for rows in splits.values() for row in rows}
    added = 0
    for s in kept:
        row = to_row("messages", s.traj, s.source)
        if _key(row) in seen:
            dropped["duplicate"] += 1
            continue
        seen.add(_key(row))
        splits[split_of(s.traj.question, val_frac)].append(row)
        added += 1
    for split, rows in splits.items():
        write_jsonl_atomic(out / f"{split}.jsonl", rows)
    stats = {"format": "messages", "episodes": len(episodes), "kept": len(kept),
             "questions_kept": len({normalize_question(s.traj.question) for s in kept}),
             "kept_ids": [s.traj.id for s in kept], "rows_added": added,
             "rows": {k: len(v) for k, v in splits.items()}, "dropped": dict(sorted(dropped.items())),
             "grounded": cfg.grounded, "wall_s": round(time.perf_counter() - t0, 2)}
    write_json_atomic(out / STATS, stats)
    say(f"round-{r}/data -> {out}: kept {len(kept)} of {len(episodes)} episodes, +{added} rows")
    return "ran"


def _key(row: dict[str, Any]) -> str:
    return json.dumps(row["messages"], sort_keys=True, ensure_ascii=False)


def _round_recipe(cfg: RFTRecipe, sft: SFTRecipe, r: int, previous: Path | None = None) -> SFTRecipe:
    """Round ``r``'s SFT recipe: its data and adapter dirs, from the base (or ``previous``, with ``init: previous``)."""
    adapter = str(previous) if previous is not None and cfg.init == "previous" else None
    return sft.model_copy(update={"out": str(_dir(cfg, r, "adapter")),
                                  "data": sft.data.model_copy(update={"path": str(_dir(cfg, r, "data"))}),
                                  "model": sft.model.model_copy(update={"adapter": adapter})})


def _samples_run(cfg: RFTRecipe, sft: SFTRecipe, adapter: Path, r: int, pool: Path) -> RunConfig:
    """``k`` episodes per pool question (ids ``<id>#1`` .. ``<id>#k``, each step sampled with a seed of
    its episode and step), in the layout the adapter was trained on (chat, zero-shot)."""
    return RunConfig(out=str(_dir(cfg, r, "samples")), data=str(pool),
                     model=ModelRef(name=sft.model.name, adapter=str(adapter)), style="chat", prompt="zeroshot",
                     temperature=cfg.temperature, samples=cfg.k, max_steps=cfg.max_steps, batch_size=cfg.batch_size)


def _heldout_run(cfg: RFTRecipe, sft: SFTRecipe, adapter: Path, r: int) -> RunConfig:
    return RunConfig(out=str(_dir(cfg, r, "heldout")), data=str(Path(cfg.out) / "questions" / "heldout.jsonl"),
                     model=ModelRef(name=sft.model.name, adapter=str(adapter)), style="chat",
                     prompt="zeroshot", max_steps=cfg.max_steps, batch_size=cfg.batch_size)


def _run_stage(run: RunConfig, n: int, wiki: Callable[[], Any], llm: Callable[[ModelRef], LLM] | None, progress: bool,
               say: Callable[[str], None], title: str) -> str:
    """A ``reactlab run`` stage: skipped when its summary covers its ``n`` episodes, else run
    (resumed by episode id when trajectories are there; the runner refuses another run's dir)."""
    from reactlab.runner import run_from_config

    path = Path(run.out)
    if (path / SUMMARY_FILE).is_file() and Summary.read(path / SUMMARY_FILE).n == n:
        say(f"{title} -> {path}: done, skipped")
        return "skipped"
    traj = path / TRAJ_FILE
    resumed = traj.is_file() and traj.stat().st_size > 0
    say(f"{title} -> {path}" + (" (resuming)" if resumed else ""))
    assert run.model is not None
    run_from_config(run, index=wiki(), llms=None if llm is None else {DEFAULT_ROLE: llm(run.model)}, progress=progress)
    gc.collect()  # the stage's model is garbage now; free it before the next one loads
    return "resumed" if resumed else "ran"


def _summary(cfg: RFTRecipe, r: int, adapter: Path, previous: Path | None = None) -> dict[str, Any]:
    """``round-R/rft.json`` (written here): what the round sampled, kept and trained on, its
    adapter's held-out score, and each stage's wall time as its own record has it (a stage resumed
    counts its last invocation only; a skipped one its earlier run)."""
    data = json.loads((_dir(cfg, r, "data") / STATS).read_text())
    out: dict[str, Any] = {"round": r, "adapter": str(adapter)}
    wall: dict[str, float] = {"data": data["wall_s"]}
    if r:
        samples = Summary.read(_dir(cfg, r, "samples") / SUMMARY_FILE)
        out.update(sampled_from=str(previous), questions_sampled=cfg.questions, episodes=data["episodes"],
                   sample_em=round(samples.main, 4), kept=data["kept"], questions_kept=data["questions_kept"],
                   rows_added=data["rows_added"], dropped=data["dropped"])
        wall["samples"] = round(samples.wall_s, 1)
    out["rows"] = data["rows"]
    if adapter_done(adapter) and (adapter / TRAINING_FILE).is_file():
        result = json.loads((adapter / TRAINING_FILE).read_text()).get("result", {})
        out["train_loss"], out["eval_loss"] = result.get("train_loss"), result.get("eval_loss")
        if r or not cfg.adapter:
            wall["train"] = result.get("wall_s", 0.0)
    if cfg.heldout:
        held = Summary.read(_dir(cfg, r, "heldout") / SUMMARY_FILE)
        out["heldout"] = {"n": held.n, **{k: round(v, 4) for k, v in held.metrics.items()}}
        wall["heldout"] = round(held.wall_s, 1)
    out["wall_s"] = {**wall, "total": round(sum(wall.values()), 1)}
    write_json_atomic(Path(cfg.out) / f"round-{r}" / "rft.json", out)
    return out
