"""Answer -> Evaluate for multiple choice (``logic_mcq``, MMLU): two agents, each a role a run may
give its own model. Methods: ``answer_evaluate`` (Answer reasons and proposes, Evaluate checks and
may correct), ``answer`` (Answer alone), ``direct`` (the answer line only).

Answers are parsed strictly first (``答案是:X`` / ``Answer: X``), then by a counted fallback; every
parse failure, fallback, disagreement and API error is a record of ``meta["errors"]`` (the
runner's ``errors.jsonl``). Each turn is a child trajectory holding the exact messages sent.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from reactlab.agents.consistency import majority
from reactlab.agents.prompting import load_pipeline_prompt
from reactlab.agents.react import example_seed, failed
from reactlab.tasks.metrics import normalize_answer
from reactlab.types import (
    Action,
    Agent,
    AgentTraits,
    Completion,
    Environment,
    EpisodeGen,
    Example,
    GenParams,
    Message,
    Query,
    Step,
    Task,
    Trajectory,
    Usage,
)

METHODS = ("answer_evaluate", "answer", "direct")
ROLES = ("answer", "evaluate")
LETTERS = "ABCDEFG"
EVALUATOR = "the Evaluate agent (a model; it never sees the gold answer)"

# --- parsing ---------------------------------------------------------------------------------------

_STRICT = re.compile(
    r"(?:答案\s*(?:是|为)\s*[:：]?|答案\s*[:：]|\banswer\s*(?:is\s*[:：]?|[:：]))\s*[(（【\[]?\s*([A-Za-z])(?![A-Za-z])",
    re.IGNORECASE,
)
_OPTION_LINE = re.compile(r"^\s*[A-G]\s*[.．、:：)]", re.MULTILINE)
_LONE = re.compile(r"(?<![A-Za-z])([A-G])(?![A-Za-z])")


@dataclass(frozen=True)
class Parsed:
    """A reply's answer letter (``""`` when none), ``how`` it was found (``strict``, ``fallback``,
    ``none``), whether strict answer lines named different letters (``several``), and ``reply``: the
    text up to the end of the first answer line (all of it, stripped, when there is none)."""

    letter: str
    how: str
    several: bool = False
    reply: str = ""


def parse_choice(text: str, n_options: int = 4, options: tuple[str, ...] | list[str] = ()) -> Parsed:
    """The option letter a reply ends with: the first strict answer line (``答案是:X`` / ``Answer: X``;
    the reply is cut after it), else the last stand-alone option letter (copied option lines
    ignored), else the text of exactly one option (``fallback``); ``none`` when there is no answer.

    >>> parse_choice("步骤1：...\\n答案是:C")
    Parsed(letter='C', how='strict', several=False, reply='步骤1：...\\n答案是:C')
    >>> parse_choice("答案是：b").letter, parse_choice("Answer: (D)").letter, parse_choice("答案是 E", 4).how
    ('B', 'D', 'none')
    >>> parse_choice("答案是:A。\\n下一题……答案是:B")
    Parsed(letter='A', how='strict', several=True, reply='答案是:A。')
    >>> parse_choice("所以选C。").letter, parse_choice("A. 1\\nB. 2\\nC. 3\\nD. 4").how
    ('C', 'none')
    >>> parse_choice("it is oxygen", 4, ["hydrogen", "nylon", "oxygen", "light"]).letter
    'C'
    """
    letters = LETTERS[:n_options]
    found = [m for m in _STRICT.finditer(text) if m.group(1).upper() in letters]
    if found:
        first = found[0]
        end = text.find("\n", first.end())
        reply = text[: end if end >= 0 else len(text)].strip()
        return Parsed(first.group(1).upper(), "strict", len({m.group(1).upper() for m in found}) > 1, reply)
    body = _OPTION_LINE.sub(" ", text) if len(_OPTION_LINE.findall(text)) >= 2 else text
    lone = [m.group(1) for m in _LONE.finditer(body) if m.group(1) in letters]
    if lone:
        return Parsed(lone[-1], "fallback", reply=text.strip())
    norm = normalize_answer(text)
    hits = [letters[i] for i, o in enumerate(options[:n_options]) if norm and normalize_answer(str(o)) in norm]
    if len(hits) == 1:
        return Parsed(hits[0], "fallback", reply=text.strip())
    return Parsed("", "none", reply=text.strip())


# --- the agent -------------------------------------------------------------------------------------


class PipelineOptions(BaseModel):
    """The pipeline's knobs (``RunConfig.options.pipeline``): Answer ``samples`` (majority vote; 1:
    greedy) at ``temperature``; ``hint``: rationalisation, for training data (refused on
    evaluation splits); ``zeroshot``: roles sent the prompt without exemplars (a role whose model
    has a fine-tuned adapter, beside a base role that keeps them)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    samples: int = Field(default=1, ge=1)
    temperature: float = Field(default=0.7, ge=0)
    hint: bool = False
    zeroshot: tuple[str, ...] = ()


class PipelineAgent(Agent):
    """``method``: answer_evaluate | answer | direct (module doc). ``prompt``: a pipeline prompt
    name or file, ``zeroshot`` for the task's without exemplars (fine-tuned adapters), None for the
    task's (``<task>_pipeline``). ``samples`` / ``temperature``: Answer samples and their
    temperature (1: greedy). ``hint``: rationalisation (training data only). ``zeroshot``: roles
    that get the prompt without exemplars when the others keep them."""

    name = "pipeline"
    metrics = ("candidate_accuracy", "right_to_wrong", "wrong_to_right", "fallback", "unparsable")

    def __init__(self, task: Task | None = None, method: str = "answer_evaluate", prompt: str | None = None,
                 model: str = "", samples: int = 1, temperature: float = 0.7, hint: bool = False,
                 max_new_tokens: int = 192, zeroshot: tuple[str, ...] | list[str] = ()) -> None:
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r} of the pipeline agent; known: {', '.join(METHODS)}")
        if samples < 1:
            raise ValueError(f"answer_samples must be at least 1, not {samples}")
        if hint and method == "direct":
            raise ValueError("hint (rationalisation) asks for reasoning: use method answer or answer_evaluate")
        self.task, self.method, self.model, self.samples, self.hint = task, method, model, samples, hint
        default = f"{task.name}_pipeline" if task is not None else "mmlu_pipeline"
        shots = prompt != "zeroshot"
        if unknown := sorted(set(zeroshot) - set(ROLES)):
            raise ValueError(f"zeroshot roles: unknown role {unknown[0]!r}; known: {', '.join(ROLES)}")
        name = default if prompt in (None, "zeroshot") else prompt
        self.prompt = load_pipeline_prompt(name, shots)
        bare = load_pipeline_prompt(name, False) if shots and zeroshot else self.prompt
        self.prompts = {r: bare if r in zeroshot else self.prompt for r in ROLES}
        self.prompt_id = self.prompt.prompt_id(method) + ("+hint" if hint else "")
        if bare is not self.prompt:
            head, _, tail = self.prompt_id.partition("/")
            self.prompt_id = f"{head}:zeroshot={'+'.join(sorted(set(zeroshot)))}/{tail}"
        self.params = GenParams(max_new_tokens=max_new_tokens)  # a reply longer than five steps is cut
        self.direct_params = GenParams(max_new_tokens=16)
        self.sample_params = GenParams(max_new_tokens=max_new_tokens, temperature=temperature, n=samples)
        self.evaluator = EVALUATOR
        self.traits = AgentTraits(roles=ROLES, metrics=self.metrics, params=self.params, model=model)

    def episode(self, example: Example, env: Environment) -> EpisodeGen:
        t0 = time.perf_counter()
        env.reset(example)
        options = list(example.meta.get("options", ()))
        if not options:
            raise ValueError(f"example {example.id}: the pipeline needs a multiple-choice task (meta['options'])")
        traj = Trajectory(id=example.id, task="", question=example.question, gold=example.answer, agent=self.name,
                          method=self.method, prompt_id=self.prompt_id, model=self.model, type=example.type,
                          meta={"errors": []})
        hint = self.prompt.user("hint", gold=example.answer) if self.hint else ""

        if self.method == "direct":
            msgs = self.prompts["answer"].messages("direct", example.question)
            c = yield Query(msgs, self.direct_params, role="answer")
            turn = self._turn(traj, "answer", msgs, msgs, c, options)
            return self._close(traj, t0, turn.answer if turn else "")

        msgs = self.prompts["answer"].messages("answer", example.question)
        sent = _with_hint(msgs, hint)
        params = self.sample_params if self.samples > 1 else self.params
        if self.samples > 1:
            params = GenParams(**{**params.__dict__, "seed": example_seed(example.id)})
        c = yield Query(sent, params, role="answer")
        answer = self._turn(traj, "answer", sent, msgs, c, options)
        if answer is None:
            return self._close(traj, t0, "")
        candidate = answer.answer
        if self.method == "answer":
            return self._close(traj, t0, candidate)

        votes = answer.meta.get("votes", 0)
        agreement = (self.prompt.user("agreement", votes=str(votes), samples=str(self.samples))
                     if self.samples > 1 and candidate else "")
        fields = {"reasoning": answer.meta["reasoning"].strip(),
                  "candidate": candidate or self.prompt.templates["no_candidate"].strip(), "agreement": agreement}
        msgs = self.prompts["evaluate"].messages("evaluate", example.question, **fields)
        sent = _with_hint(msgs, hint)
        c = yield Query(sent, self.params, role="evaluate")
        evaluate = self._turn(traj, "evaluate", sent, msgs, c, options)
        if evaluate is None:
            return self._close(traj, t0, "")
        final = evaluate.answer or candidate
        if not evaluate.answer:
            traj.meta["errors"][-1]["action"] = (f"kept the candidate {candidate}" if candidate
                                                 else "no answer: neither agent gave one")
        elif candidate and evaluate.answer != candidate:
            _log(traj, "changed", "evaluate", evaluate.steps[0].raw, f"{candidate} -> {evaluate.answer}")
        return self._close(traj, t0, final)

    def _turn(self, traj: Trajectory, role: str, sent: list[Message], train: list[Message], c: Completion,
              options: list[str]) -> Trajectory | None:
        """Record one turn as a child trajectory (None when the call failed: the episode is an error)."""
        if failed(c, traj):
            _log(traj, "api_error", role, c.error or "", "episode marked error: a rerun of the same command retries it")
            return None
        samples = c.samples or [c]
        parsed = [parse_choice(s.text, len(options), options) for s in samples]
        letter, votes = majority([p.letter for p in parsed])
        pick = next((i for i, p in enumerate(parsed) if p.letter == letter), 0)
        text, how = samples[pick].text, parsed[pick]
        reply = how.reply
        child = Trajectory(id=traj.id, task="", question=traj.question, gold=traj.gold, agent=role,
                           method=self.method, prompt_id=self.prompt_id, model=self.model, type=traj.type)
        usage = Usage(c.usage.prompt_tokens, sum(s.usage.completion_tokens for s in samples), c.usage.cached_tokens)
        child.steps = [Step(i=1, thought=reply, action=Action("finish", letter), observation="", raw=text, usage=usage)]
        child.answer, child.usage = letter, usage
        child.status = "finished" if c.finish_reason == "stop" else "max_steps"
        child.meta = {"messages": sent, "parse": how.how, "reasoning": reply}
        if train is not sent and train != sent:
            child.meta["train_messages"] = train
        if len(samples) > 1:
            child.meta["votes"] = votes
            child.meta["samples"] = [{"raw": s.text, "reply": p.reply, "letter": p.letter, "parse": p.how}
                                     for s, p in zip(samples, parsed, strict=True)]
        if how.how == "none":
            _log(traj, "unparsable", role, text, "no answer from this turn")
        elif how.how == "fallback":
            _log(traj, "fallback", role, text, f"took {letter} by fallback extraction")
        if how.several:
            _log(traj, "several_answers", role, text, f"took the first answer line: {letter}")
        traj.children.append(child)
        return child

    def _close(self, traj: Trajectory, t0: float, answer: str) -> Trajectory:
        traj.answer = answer
        traj.steps = [Step(i=i, thought=ch.steps[0].thought, action=ch.steps[0].action, observation="",
                           raw=ch.steps[0].raw, usage=ch.usage) for i, ch in enumerate(traj.children, 1)]
        traj.usage = sum((ch.usage for ch in traj.children), Usage())
        traj.wall_s = time.perf_counter() - t0
        return traj

    def scores(self, example: Example, traj: Trajectory, task: Task) -> dict[str, float]:
        """The pipeline's own scores beside the task's: the Answer agent's accuracy, the Evaluate
        agent's flips (right -> wrong, wrong -> right), and how answers were parsed."""
        metric = task.main_metric
        answer = next((ch for ch in traj.children if ch.agent == "answer"), None)
        cand = task.score(example, answer.answer).get(metric, 0.0) if answer else 0.0
        final = task.score(example, traj.answer).get(metric, 0.0)
        kinds = {e["kind"] for e in traj.meta.get("errors", [])}
        out = {"candidate_accuracy": cand, "fallback": float("fallback" in kinds),
               "unparsable": float(not traj.answer)}
        if self.method == "answer_evaluate":
            out["right_to_wrong"] = float(cand == 1.0 and final < 1.0)
            out["wrong_to_right"] = float(cand < 1.0 and final == 1.0)
        return out


def _with_hint(msgs: list[Message], hint: str) -> list[Message]:
    if not hint:
        return msgs
    return [*msgs[:-1], {"role": "user", "content": msgs[-1]["content"] + hint}]


def _log(traj: Trajectory, kind: str, agent: str, raw: str, action: str) -> None:
    traj.meta["errors"].append({"kind": kind, "agent": agent, "raw": raw[:2000], "action": action})
