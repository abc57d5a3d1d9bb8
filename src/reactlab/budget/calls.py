"""Per-call budget: how many tokens ONE model call (a ReAct step, a CoT answer) will generate, read
from its prompt text alone, so a server can order the calls it holds (shortest first).

A call row is one step of a run's trajectory: the prompt the agent sent for it, rebuilt from the
trajectory as the agent builds it (the paper's completion layout: ``Question: ...`` then each
earlier step's ``Thought/Action/Observation`` lines, then the ``Thought i:`` head), and the tokens
that step generated (``Step.usage.completion_tokens``). The zero-shot chat layout (a fine-tuned
agent's) is rebuilt as a server sees it: ``types.prompt_text`` of the messages, the question then
each earlier step's ``Thought: / Action:`` turn and ``Observation:`` turn. A step whose action needed
the agent's second call (its raw text holds ``[action]``) counts two calls' tokens and is dropped, as
are steps of other layouts (few-shot chat, tool calls) and steps with no token count. A server's
recording (``reactlab serve --record DIR``) gives one row per exchange: its request's messages as
``types.prompt_text`` joins them, and the completion tokens of its reply (``record_rows``), so a
server can learn which of the requests it serves run long.

``call_features`` reads only the prompt's last episode (from its last ``Question:`` / ``Claim:``
line; a chat text has none and is one episode), so the few-shot exemplars before it do not matter. Token counts are scored as classes
(buckets: ``labels.bucket_of`` under the ``call_edges`` of ``stats.json``). ``load_call_predictor``
is what a server's scheduler imports: ``predict_tokens(prompt_text) -> float``.
"""

from __future__ import annotations

import bisect
import math
import re
import statistics
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from reactlab.io import DataError, iter_jsonl, require, write_json_atomic

CALL_PREDICTOR_FILE = "call_predictor.json"
CALL_KINDS = ("mean", "mode", "head", "step", "ridge", "gbm", "ridge+words", "gbm+words")
SECOND_CALL = "\n[action] "
"""What the react agent appends to a step's raw text when it asked a second time for the action."""


@dataclass
class CallRow:
    """One model call: ``prompt`` (its last episode, as the agent sent it), ``tokens`` generated,
    their ``bucket``, and where it came from."""

    prompt: str
    tokens: int
    bucket: int | None = None
    question: str = ""
    id: str = ""
    step: int = 1
    task: str = ""
    agent: str = "react"
    method: str = "react"
    model: str = ""
    label_set: str = ""
    source: str = ""
    split: str = "train"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _label(prompt_id: str) -> str | None:
    """The question label of a completion-layout prompt (``Question``, FEVER's ``Claim``); None for
    the chat and tools layouts."""
    if "chat" in prompt_id or "tools" in prompt_id:
        return None
    from reactlab.agents.prompting import load_prompt

    try:
        return load_prompt(prompt_id.split("@", 1)[0]).label
    except (ValueError, OSError):  # a prompt file that is gone: the common label
        return "Question"


def episode_prompt(traj: Any, i: int, label: str = "Question") -> str | None:
    """The last episode of the prompt of ``traj``'s step ``i`` (1-based), as the react agent's
    completion layout builds it; None for a method whose calls this does not rebuild."""
    from reactlab.agents.parsing import completion_step

    method = traj.method or "react"
    head = f"{label}: {traj.question}\n"
    if method == "cot":
        return head + "Thought: Let's think step by step."
    if method == "standard":
        return head + "Answer:"
    if method not in ("react", "act"):
        return None
    done = "".join(completion_step(s.i, s.thought if method == "react" else None, s.action, s.observation)
                   for s in traj.steps[: i - 1])
    return head + done + (f"Thought {i}:" if method == "react" else f"Action {i}:")


def zero_shot_chat(traj: Any) -> bool:
    """Whether ``traj`` is a zero-shot chat-layout ReAct episode: the calls ``chat_turns`` rebuilds."""
    from reactlab.agents.prompting import layout_prompt_id

    return traj.prompt_id == layout_prompt_id("chat", "react") and (traj.method or "react") == "react"


def chat_turns(traj: Any, i: int) -> list[dict[str, str]]:
    """The messages the zero-shot chat agent sent for ``traj``'s step ``i`` (1-based): the question,
    then each earlier step's assistant turn and observation turn."""
    from reactlab.agents.parsing import chat_assistant, chat_observation

    out = [{"role": "user", "content": traj.question}]
    for s in traj.steps[: i - 1]:
        out += [{"role": "assistant", "content": chat_assistant(s.thought, s.action)},
                {"role": "user", "content": chat_observation(s.observation)}]
    return out


def chat_prompt(traj: Any, i: int) -> str:
    """The text of ``chat_turns`` as ``types.prompt_text`` joins them: what a server's scheduler reads."""
    from reactlab.types import prompt_text

    return prompt_text(chat_turns(traj, i))


def call_rows(samples: Iterable[Any], split_of: Callable[[str], str],
              label_set_of: Callable[[Any], str] = lambda s: "") -> tuple[list[CallRow], Counter]:
    """One row per model call of ``samples`` (``data.sources.Sample``); ``split_of(question)``
    puts every call of a question on one side. Returns the rows and what was dropped (counted)."""
    rows: list[CallRow] = []
    dropped: Counter = Counter()
    for s in samples:
        t = s.traj
        if t.status in ("error", "unrun") or not t.steps:
            dropped["episode"] += 1
            continue
        label = _label(t.prompt_id)
        chat = zero_shot_chat(t)
        for step in t.steps:
            prompt = chat_prompt(t, step.i) if chat else episode_prompt(t, step.i, label) if label else None
            if prompt is None:
                dropped["layout"] += 1
            elif SECOND_CALL in step.raw:
                dropped["two_calls"] += 1
            elif not step.usage.completion_tokens:
                dropped["no_tokens"] += 1
            else:
                rows.append(CallRow(prompt=prompt, tokens=step.usage.completion_tokens, question=t.question, id=t.id,
                                    step=step.i, task=t.task, agent=t.agent, method=t.method or "react",
                                    model=t.model, label_set=label_set_of(s), source=s.source,
                                    split=split_of(t.question)))
    return rows, dropped


def record_rows(directory: str | Path, split_of: Callable[[str], str], label_set: str = "") -> tuple[list[CallRow], Counter]:
    """One row per exchange of a ``serve --record`` recording: the request's messages as the server's
    scheduler reads them (``types.prompt_text``) and the reply's completion tokens. ``split_of`` gets
    the conversation's first user turn (every exchange of a conversation on one side). Exchanges
    with tools (another layout) or no completion tokens are dropped (counted)."""
    from reactlab.data.recorded import first_user_turn, read_exchanges
    from reactlab.types import prompt_text

    rows: list[CallRow] = []
    dropped: Counter = Counter()
    for where, rec in read_exchanges(directory)[0]:
        request = rec["messages"][:-1]  # the reply is the last message
        tokens = (rec.get("usage") or {}).get("completion_tokens")
        if rec["request"].get("tools"):
            dropped["tools"] += 1
        elif not isinstance(tokens, int) or tokens <= 0:
            dropped["no_tokens"] += 1
        else:
            first = first_user_turn(request)
            rows.append(CallRow(prompt=prompt_text(request), tokens=tokens, question=first, id=rec["conversation_id"],
                                step=1 + sum(m.get("role") == "assistant" for m in request), agent="server",
                                method="chat", model=str(rec["request"]["params"].get("model", "")),
                                label_set=label_set, source=where, split=split_of(first)))
    return rows, dropped


_MARK = re.compile(r"(?:^|\n)(?:Question|Claim): ")
_OBS = re.compile(r"\nObservation \d+: ([^\n]*)")
_ACT = re.compile(r"\nAction \d+: ([^\n]*)")
_THOUGHT = re.compile(r"(?:^|\n)Thought \d+: ([^\n]*)")
_CHAT = {"obs": re.compile(r"\nObservation: ([^\n]*)"), "act": re.compile(r"\nAction: ([^\n]*)"),
         "thought": re.compile(r"(?:^|\n)Thought: ([^\n]*)")}
"""The chat layout's unnumbered lines (``chat_prompt``)."""
_CALL = re.compile(r"^(\w+)\[(.*)\]$")
_HEADS = {"thought": re.compile(r"Thought \d+:$"), "action": re.compile(r"Action \d+:$"),
          "cot": re.compile(r"step by step\.$"), "answer": re.compile(r"Answer:$")}
_ACTIONS = ("search", "lookup", "finish", "invalid", "none")
_WORD = re.compile(r"[^\W\d_]+")
WORD_BINS, WORD_LIMIT = 16, 8
"""The opening words of a prompt (``WORD_LIMIT`` of its first line, lower-cased), hashed into
``WORD_BINS`` counts: what a request asks for (``Explain ...``, ``Answer in one word ...``) is what
decides its length when it is not an agent's step."""
HEADS = (*_HEADS, "chat", "other")


def call_head(prompt_text: str) -> str:
    """The kind of call a prompt asks for, from how it ends: ``thought`` (a ReAct step), ``action``
    (an Act step), ``cot`` (a chain-of-thought answer), ``answer`` (a direct one), ``chat`` (a chat
    text, ``chat_prompt``: no ``Question:`` line) or ``other``.

    >>> call_head("Question: Who?\\nThought: Let's think step by step."), call_head("Question: Who?\\nThought 2:")
    ('cot', 'thought')
    >>> call_head("Who?\\nThought: Go.\\nAction: search[X]\\nObservation: X is y.")
    'chat'
    """
    tail = prompt_text.rstrip()
    return next((h for h, r in _HEADS.items() if r.search(tail)), "other" if _MARK.search(prompt_text) else "chat")


def call_features(prompt_text: str) -> dict[str, float]:
    """Numeric features of a call's prompt text (its last episode: the module docstring).

    >>> f = call_features("Question: Who?\\nThought 1: Look.\\nAction 1: Search[X]\\nObservation 1: Could not find X. "
    ...                   "Similar: ['Y'].\\nThought 2:")
    >>> f["step"], f["head=thought"], f["prev=search"], f["obs_notfound"], f["question_chars"]
    (2.0, 1.0, 1.0, 1.0, 4.0)
    """
    from reactlab.budget.env import entities

    marks = list(_MARK.finditer(prompt_text))
    ep = prompt_text[marks[-1].start():].lstrip("\n") if marks else prompt_text
    if marks:
        question = ep.split("\n", 1)[0].split(": ", 1)[-1]
        obs, acts, thoughts = _OBS.findall(ep), _ACT.findall(ep), _THOUGHT.findall(ep)
    else:  # a chat text (``chat_prompt``): the question is its first turn
        question = ep.split("\nThought: ", 1)[0]
        obs, acts, thoughts = (_CHAT[k].findall(ep) for k in ("obs", "act", "thought"))
    ents = entities(question)  # the titles an agent copies into its searches and thoughts
    names = []
    for a in acts:
        m = _CALL.match(a.strip())
        names.append(m.group(1).lower() if m and m.group(1).lower() in _ACTIONS else "invalid")
    last = obs[-1] if obs else ""
    out = {"episode_chars": float(len(ep)),
           "question_chars": float(len(question)), "question_words": float(len(question.split())),
           "question_entities": float(len(ents)), "entity_first_chars": float(len(ents[0])) if ents else 0.0,
           "entity_max_chars": float(max(map(len, ents), default=0)), "step": float(len(obs) + 1),
           "obs_chars": float(len(last)), "obs_notfound": float("Could not find" in last),
           "obs_similar": float(last.count("', '") + 1 if "Similar:" in last else 0),
           "obs_result": float("(Result " in last), "obs_nomore": float("No more results" in last),
           "notfound_total": float(ep.count("Could not find")),
           "thought_chars": float(len(thoughts[-1])) if thoughts else 0.0,
           "thought_mean_chars": statistics.fmean(len(t) for t in thoughts) if thoughts else 0.0,
           "repeated_action": float(len(acts) > 1 and acts[-1].strip() == acts[-2].strip())}
    head = call_head(ep)
    out |= {f"head={h}": float(head == h) for h in (*_HEADS, "chat")}
    prev = names[-1] if names else "none"
    out |= {f"prev={a}": float(prev == a) for a in _ACTIONS}
    words = Counter(zlib.crc32(w.encode("utf-8")) % WORD_BINS
                    for w in _WORD.findall(ep.split("\n", 1)[0].lower())[:WORD_LIMIT])
    out |= {f"word{b}": float(words[b]) for b in range(WORD_BINS)}
    return out


WORDS = tuple(f"word{b}" for b in range(WORD_BINS))
NAMES = tuple(n for n in call_features("Question: ?\nThought 1:") if n not in WORDS)
"""The features of ``ridge`` / ``gbm``; ``+words`` adds ``WORDS`` (a server's mixed requests, whose
opening words say what they ask for; on one agent's calls they are the question's words: noise)."""


def feature_names(kind: str) -> tuple[str, ...]:
    """The features a call predictor of ``kind`` reads."""
    return NAMES + WORDS if kind.endswith("+words") else NAMES


def call_step(prompt_text: str) -> int:
    """The step a call's prompt asks for: 1 + the observations of its last episode."""
    return int(call_features(prompt_text)["step"])


def _step_key(prompt_text: str, head: str) -> str:
    """The ``step`` baseline's key of a call: its kind and step."""
    return f"{head}/{call_step(prompt_text)}"


def _check_kind(kind: str) -> None:
    if kind not in CALL_KINDS:
        raise ValueError(f"unknown call predictor {kind!r}; known: {', '.join(CALL_KINDS)}")


def _bucket(tokens: int, edges: Sequence[int]) -> int:
    """``labels.bucket_of``'s rule (this module is imported by ``labels``, so it cannot import it)."""
    return bisect.bisect_right(edges, tokens)


class CallPredictor:
    """Tokens of one call from its prompt text: a constant (``mean`` of the training labels;
    ``mode``: the median count of the commonest bucket), ``head``: the mean of the training calls of
    the same kind (``call_head``; the cheap baseline of a mixed workload, where the kind of call
    alone orders much), ``step``: of the same kind and step (an agent whose last call is short
    orders its calls by position alone), ``ridge`` or ``gbm`` on ``call_features`` (``+words``: with
    the opening words too). Predictions are clipped to the training labels' range; saved as JSON
    (no scikit-learn needed)."""

    def __init__(self, kind: str, edges: list[int], model: dict[str, Any], lo: float, hi: float):
        _check_kind(kind)
        self.kind, self.edges, self.model, self.lo, self.hi = kind, edges, model, lo, hi
        self.names = feature_names(kind)

    def _x(self, prompt_text: str) -> list[float]:
        f = call_features(prompt_text)
        return [f[n] for n in self.names]

    def predict_tokens(self, prompt_text: str) -> float:
        """The predicted completion tokens of the call whose prompt is ``prompt_text``."""
        m = self.model
        if self.kind in ("mean", "mode"):
            z = m["constant"]
        elif self.kind == "head":
            z = m["by_head"].get(call_head(prompt_text), m["constant"])
        elif self.kind == "step":
            head = call_head(prompt_text)
            z = m["by_step"].get(_step_key(prompt_text, head), m["by_head"].get(head, m["constant"]))
        elif self.kind.startswith("ridge"):
            z = m["intercept"] + sum(c * (v - mu) / s for c, v, mu, s in
                                     zip(m["coef"], self._x(prompt_text), m["mean"], m["scale"], strict=True))
        else:
            from reactlab.budget import gbm

            z = gbm.predict(m, self._x(prompt_text))
        return float(min(self.hi, max(self.lo, z)))

    def predict_bucket(self, prompt_text: str) -> int:
        return _bucket(int(math.floor(self.predict_tokens(prompt_text) + 0.5)), self.edges)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": f"call_{self.kind}", "edges": self.edges, "model": self.model, "range": [self.lo, self.hi],
                "features": list(self.names)}


def fit_call_predictor(kind: str, rows: Sequence[CallRow], edges: Sequence[int]) -> CallPredictor:
    """A ``CallPredictor`` of ``kind`` fitted on ``rows`` (the ``train`` calls)."""
    _check_kind(kind)  # before any fitting
    if not rows:
        raise ValueError("no training calls to fit a call predictor on")
    y = [float(r.tokens) for r in rows]
    lo, hi = min(y), max(y)
    if kind == "mean":
        return CallPredictor(kind, list(edges), {"constant": statistics.fmean(y)}, lo, hi)
    if kind == "mode":
        top = Counter(_bucket(r.tokens, edges) for r in rows).most_common(1)[0][0]
        return CallPredictor(kind, list(edges), {"constant": float(statistics.median(
            r.tokens for r in rows if _bucket(r.tokens, edges) == top))}, lo, hi)
    if kind in ("head", "step"):
        by: dict[str, list[float]] = {}
        by_step: dict[str, list[float]] = {}
        for r in rows:
            head = call_head(r.prompt)
            by.setdefault(head, []).append(float(r.tokens))
            if kind == "step":
                by_step.setdefault(_step_key(r.prompt, head), []).append(float(r.tokens))
        model: dict[str, Any] = {"constant": statistics.fmean(y), "by_head": {
            h: statistics.fmean(v) for h, v in sorted(by.items())}}
        if kind == "step":
            model["by_step"] = {k: statistics.fmean(v) for k, v in sorted(by_step.items())}
        return CallPredictor(kind, list(edges), model, lo, hi)
    names = feature_names(kind)
    x = [[call_features(r.prompt)[n] for n in names] for r in rows]
    if kind.startswith("gbm"):
        from reactlab.budget import gbm

        return CallPredictor(kind, list(edges), gbm.fit(x, y), lo, hi)
    try:
        from sklearn.linear_model import Ridge
        from sklearn.preprocessing import StandardScaler
    except ModuleNotFoundError:
        raise ModuleNotFoundError("the ridge needs scikit-learn: pip install 'reactlab[budget]'") from None
    scaler = StandardScaler().fit(x)
    ridge = Ridge(alpha=1.0).fit(scaler.transform(x), y)
    return CallPredictor(kind, list(edges), {
        "mean": [float(v) for v in scaler.mean_], "scale": [float(s) if s else 1.0 for s in scaler.scale_],
        "coef": [float(c) for c in ridge.coef_], "intercept": float(ridge.intercept_)}, lo, hi)


def save_call_predictor(p: CallPredictor, path: str | Path) -> Path:
    """Write ``p`` to ``path`` (a ``.json`` file) or ``path/call_predictor.json``."""
    path = Path(path)
    target = path if path.suffix == ".json" else path / CALL_PREDICTOR_FILE
    write_json_atomic(target, p.to_dict())
    return target


def load_call_predictor(path: str | Path) -> CallPredictor:
    """A saved call predictor (a ``call_predictor.json`` or its directory): an object with
    ``predict_tokens(prompt_text: str) -> float``."""
    import json

    path = Path(path)
    file = path / CALL_PREDICTOR_FILE if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(f"{file}: no such call predictor (train one with `reactlab budget train call_gbm`)")
    try:
        d = json.loads(file.read_text(encoding="utf-8"))
        kind = str(d["kind"])
        if not kind.startswith("call_"):
            raise DataError(f"{file}: field 'kind': {kind!r} is not a call predictor (call_mean, call_gbm, ...)")
        if d["features"] != list(feature_names(kind)):
            raise DataError(f"{file}: field 'features': made with other call features; retrain it")
        lo, hi = d["range"]
        return CallPredictor(kind.removeprefix("call_"), d["edges"], d["model"], float(lo), float(hi))
    except json.JSONDecodeError as e:
        raise DataError(f"{file}: not JSON ({e.msg})") from None
    except DataError:
        raise
    except (KeyError, TypeError, ValueError) as e:
        raise DataError(f"{file}: not a call predictor record ({type(e).__name__}: {e})") from None


def row_from_record(rec: dict[str, Any], where: str) -> CallRow:
    """A call row from its JSON record, checked (errors name the field)."""
    require(rec, "prompt", str, where)
    require(rec, "tokens", int, where)
    unknown = sorted(set(rec) - set(CallRow.__dataclass_fields__))
    if unknown:
        raise DataError(f"{where}: unknown field(s) {unknown}; a call row has {sorted(CallRow.__dataclass_fields__)}")
    return CallRow(**rec)


def read_calls(path: str | Path) -> list[CallRow]:
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: no such file (build call rows with `reactlab budget build --target call_tokens`)")
    return [row_from_record(rec, where) for where, rec in iter_jsonl(path)]
