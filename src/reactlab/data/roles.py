"""Training rows for one role of the Answer -> Evaluate pipeline (``agents/pipeline.py``), from its runs.

A row of role R is R's last user message (what the agent sends with ``--prompt zeroshot``, byte for
byte) and one reply up to its first answer line, kept when its strictly parsed letter is the gold
one. Who wrote the replies makes the kind of teacher data: a teacher model through an API, the
local model's own samples (rejection sampling) or a hinted prompt (rationalisation; the row's
prompt is the one without the hint). Layouts: ``messages`` and ``alpaca``.

Teacher-free Evaluate rows (role ``evaluate_gold``): every Answer reply of a run (right, wrong, or
with no answer line) becomes the Evaluate prompt the pipeline would send after it (the candidate a
fallback letter, or the template saying there is none), and the target is ``答案是:<gold>``.
Gold letters are skewed (B and A most of them), so these rows are balanced per option count: each
gold letter keeps as many rows as the rarest letter of its option count has (none when a letter
has none), so a role that only learns the letter prior learns a uniform guess. Answer rows whose last step names another option
than their answer line are dropped (``contradicts``).
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from reactlab.data.select import normalize_question
from reactlab.data.sources import Sample
from reactlab.types import Message, Trajectory

T = TypeVar("T")
ROLE_FORMATS = ("messages", "alpaca")
ROLES = ("answer", "evaluate", "evaluate_gold")
_STEP_LETTER = re.compile(r"(?:选项|选择|选|答案|option)\s*(?:应该?是|应为|是|为|is)?\s*[:：]?\s*[(（]?\s*([A-G])"
                          r"(?![A-Za-z])", re.IGNORECASE)
_ANSWER_LINE = re.compile(r"答案\s*(?:是|为)\s*[:：]?|答案\s*[:：]|\banswer\s*(?:is\s*[:：]?|[:：])", re.IGNORECASE)


def role_prompt_id(traj: Trajectory, role: str) -> str:
    """The prompt id of a role's rows: the pipeline prompt's id, zero-shot, and the role.

    >>> role_prompt_id(Trajectory("1", "", "q", "A", "pipeline", "logic_mcq_pipeline@1/answer_evaluate+hint", ""), "answer")
    'logic_mcq_pipeline@1:zeroshot/answer'
    """
    base = traj.prompt_id.split("/", 1)[0].split(":", 1)[0]
    return f"{base}:zeroshot/{role}"


def hint_lines(sent: str, kept: str) -> list[str]:
    """The sentences a hinted prompt added to the row's prompt (``sent`` minus its start ``kept``), at
    least 6 characters each: a reply that repeats one gives the hint away and is no training row.

    >>> hint_lines("Q?\\n\\n提示：正确答案是 C。请写出推理过程。", "Q?"), hint_lines("Q?", "Q?")
    (['提示：正确答案是 C。', '请写出推理过程。'], [])
    """
    extra = sent[len(kept):] if sent.startswith(kept) else ""
    parts = re.split(r"(?<=[。.!?！？])|\n", extra)
    return [p.strip() for p in parts if len(p.strip()) >= 6]


def contradicts(reply: str, letter: str) -> bool:
    """Whether a reply's last step names another option than its answer line's ``letter``: the
    last option the step names after a cue (选项 / 选 / 答案是 / option). A step naming none, or
    letters as names of people or things (``A 比 B 高``), does not contradict.

    >>> contradicts("步骤1：……\\n步骤2：对应选项 A。\\n答案是:A", "A"), contradicts("步骤1：所以选 B。\\n答案是:C", "C")
    (False, True)
    >>> contradicts("步骤1：A 比 B 高。\\n答案是:C", "C"), contradicts("步骤1：排除 A，选项 D 正确。答案是:D", "D")
    (False, False)
    """
    m = _ANSWER_LINE.search(reply)
    lines = [x for x in (reply[: m.start()] if m else reply).splitlines() if x.strip()]
    named = [x.upper() for x in _STEP_LETTER.findall(lines[-1])] if lines else []
    return bool(named) and named[-1] != letter.upper()


def _replies(child: Trajectory) -> list[tuple[str, str, str]]:
    """``(reply, letter, parse)`` of every sample of a turn (one when it was not sampled); the reply
    ends with its first answer line (``pipeline.parse_choice``)."""
    if child.meta.get("samples"):
        return [(s["reply"], s["letter"], s["parse"]) for s in child.meta["samples"]]
    return [(child.steps[0].thought if child.steps else "", child.answer, child.meta.get("parse", ""))]


def role_rows(samples: Sequence[Sample], role: str, fmt: str, excluded: set[str],
              ) -> tuple[list[tuple[dict[str, Any], Sample]], Counter, dict[str, int]]:
    """Rows of ``role`` in ``fmt`` with the sample each came from, the drop reasons (per reply),
    and counts (``replies``, ``corrections``: Evaluate rows whose candidate was wrong)."""
    if fmt not in ROLE_FORMATS:
        raise ValueError(f"pipeline role rows come in {', '.join(ROLE_FORMATS)}, not {fmt!r}")
    if role not in ROLES:
        raise ValueError(f"unknown pipeline role {role!r}; known: {', '.join(ROLES)}")
    if role == "evaluate_gold":
        return evaluate_gold_rows(samples, fmt, excluded)
    rows: list[tuple[dict[str, Any], Sample]] = []
    dropped: Counter = Counter()
    counts: Counter = Counter()
    seen: set[tuple[str, str]] = set()
    for s in samples:
        t = s.traj
        child = next((c for c in t.children if c.agent == role), None)
        if t.agent != "pipeline" or child is None:
            dropped["not_pipeline" if t.agent != "pipeline" else f"no_{role}_turn"] += 1
            continue
        if normalize_question(t.question) in excluded:
            dropped["eval_overlap"] += 1
            continue
        sent: list[Message] = child.meta.get("train_messages") or child.meta["messages"]
        user = sent[-1]["content"]
        hint = hint_lines(child.meta["messages"][-1]["content"], user)
        candidate = next((c.answer for c in t.children if c.agent == "answer"), "")
        for raw, letter, how in _replies(child):
            counts["replies"] += 1
            if how != "strict":
                dropped["no_answer_line"] += 1
            elif letter != t.gold:
                dropped["incorrect"] += 1
            elif role == "answer" and contradicts(raw, letter):
                dropped["contradicts"] += 1
            elif any(h in raw for h in hint):
                dropped["hint_leak"] += 1
            elif (user, raw) in seen:
                dropped["duplicate"] += 1
            else:
                seen.add((user, raw))
                rows.append((role_row(fmt, user, raw.strip(), s.source, role_prompt_id(t, role), t.task, role), s))
                if role == "evaluate" and candidate != t.gold:
                    counts["corrections"] += 1
    return rows, dropped, {"replies": counts["replies"], "corrections": counts["corrections"]}


def evaluate_gold_rows(samples: Sequence[Sample], fmt: str, excluded: set[str],
                       ) -> tuple[list[tuple[dict[str, Any], Sample]], Counter, dict[str, int]]:
    """Evaluate rows without a teacher (module doc): each Answer reply, as the zero-shot Evaluate
    prompt the pipeline sends after it, target ``答案是:<gold>``; balanced per option count. Counts:
    ``replies``, ``keeps`` (right candidate), ``corrections`` (wrong one), ``no_candidate`` (no
    letter found: the role answers alone), and the rows per ``options=N/gold=X``."""
    from reactlab.agents.prompting import load_pipeline_prompt

    dropped: Counter = Counter()
    counts: Counter = Counter()
    groups: dict[tuple[int, str], list[tuple[str, dict[str, Any], Sample, str]]] = {}
    seen: set[str] = set()
    prompts: dict[str, Any] = {}
    for s in samples:
        t = s.traj
        child = next((c for c in t.children if c.agent == "answer"), None)
        if t.agent != "pipeline" or child is None:
            dropped["not_pipeline" if t.agent != "pipeline" else "no_answer_turn"] += 1
            continue
        if normalize_question(t.question) in excluded:
            dropped["eval_overlap"] += 1
            continue
        name, _, version = t.prompt_id.split("/", 1)[0].split(":", 1)[0].partition("@")
        if name not in prompts:
            prompts[name] = load_pipeline_prompt(name, shots=False)
            if str(prompts[name].version) != version:
                raise ValueError(f"{s.source}: the run used prompt {name}@{version}; the packaged one is "
                                 f"version {prompts[name].version} (rebuild the run)")
        prompt = prompts[name]
        n_options = _n_options(t.question)
        sent: list[Message] = child.meta.get("train_messages") or child.meta["messages"]
        hint = hint_lines(child.meta["messages"][-1]["content"], sent[-1]["content"])
        for raw, letter, _how in _replies(child):
            counts["replies"] += 1
            if any(h in raw for h in hint):  # a hinted run's reply that gives the gold away
                dropped["hint_leak"] += 1
                continue
            # as the pipeline sends it: a fallback letter is the candidate, no letter says there is none
            candidate = letter or prompt.templates["no_candidate"].strip()
            user = prompt.messages("evaluate", t.question, reasoning=raw.strip(), candidate=candidate,
                                   agreement="")[-1]["content"]
            if user in seen:
                dropped["duplicate"] += 1
                continue
            seen.add(user)
            row = role_row(fmt, user, f"答案是:{t.gold}", s.source, f"{name}@{prompt.version}:zeroshot/evaluate",
                       t.task, "evaluate")
            kind = "keeps" if letter == t.gold else "corrections" if letter else "no_candidate"
            groups.setdefault((n_options, t.gold), []).append((user, row, s, kind))
    rows: list[tuple[dict[str, Any], Sample]] = []
    for (n, x), kept in balanced(groups, dropped, key=lambda g: g[0]).items():
        counts[f"options={n}/gold={x}"] = len(kept)
        for _, row, s, kind in kept:
            rows.append((row, s))
            counts[kind] += 1
    return rows, dropped, dict(counts)


def balanced(groups: dict[tuple[int, str], list[T]], dropped: Counter, key: Callable[[T], str],
             ) -> dict[tuple[int, str], list[T]]:
    """Items grouped by ``(n_options, gold letter)`` cut so that each letter of an option count keeps
    as many as its rarest letter (none when a letter has none), in a fixed hash order of ``key``
    (not file order, which groups a problem's questions); the cut counts as ``dropped["balance"]``."""
    from reactlab.agents.pipeline import LETTERS

    out: dict[tuple[int, str], list[T]] = {}
    for n in sorted({n for n, _ in groups}):
        least = min(len(groups.get((n, x), [])) for x in LETTERS[:n])
        for x in LETTERS[:n]:
            group = sorted(groups.get((n, x), []), key=lambda g: _stable(key(g)))
            if least:
                out[(n, x)] = group[:least]
            if len(group) > least:
                dropped["balance"] += len(group) - least
    return out


def _n_options(question: str) -> int:
    """How many lettered options end a question (``tasks.logic_mcq.format_question``'s lines).

    >>> _n_options("规则。\\nA. 见下\\n\\n哪一个？\\nA. 是\\nB. 否")
    2
    """
    n = 0
    for line in reversed(question.splitlines()):
        if not re.match(r"[A-G]\. ", line):
            break
        n += 1
    return n


def _stable(text: str) -> str:
    """An order that does not follow the file's (which groups a problem's questions), seed-free."""
    return hashlib.sha256(text.encode()).hexdigest()


def role_row(fmt: str, user: str, reply: str, source: str, prompt_id: str, task: str, role: str) -> dict[str, Any]:
    """One training row of ``role`` in ``fmt``: the user message, the reply, and where it came from."""
    meta = {"source": source, "prompt_id": prompt_id, "task": task, "method": role}
    if fmt == "alpaca":
        return {"instruction": user, "input": "", "output": reply} | meta
    return {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": reply}]} | meta
