"""Answer scoring exactly as HotpotQA's official evaluation script,
which is SQuAD's normalisation plus a yes/no/noanswer rule for F1, and aggregation with a
standard error so that two runs can be compared honestly.
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

_PUNCT = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(s: str) -> str:
    """Lower-case, drop punctuation, drop articles, collapse whitespace (the official order).

    >>> normalize_answer("The  Eiffel-Tower!")
    'eiffeltower'
    >>> normalize_answer("An apple a day")
    'apple day'
    """
    s = s.lower()
    s = "".join(ch for ch in s if ch not in _PUNCT)
    s = _ARTICLES.sub(" ", s)
    return " ".join(s.split())


def exact_match(prediction: str, gold: str) -> float:
    """1.0 when the normalised strings are equal.

    >>> exact_match("the United States", "United States")
    1.0
    """
    return float(normalize_answer(prediction) == normalize_answer(gold))


def f1_precision_recall(prediction: str, gold: str) -> tuple[float, float, float]:
    """Token-level F1, precision, recall; a yes/no/noanswer on either side must match exactly.

    >>> f1_precision_recall("Barack Obama", "Obama")
    (0.6666666666666666, 0.5, 1.0)
    >>> f1_precision_recall("yes", "yes sir")
    (0.0, 0.0, 0.0)
    """
    p, g = normalize_answer(prediction), normalize_answer(gold)
    special = ("yes", "no", "noanswer")
    if (p in special or g in special) and p != g:
        return 0.0, 0.0, 0.0
    p_tokens, g_tokens = p.split(), g.split()
    same = sum((Counter(p_tokens) & Counter(g_tokens)).values())
    if same == 0:
        return 0.0, 0.0, 0.0
    precision = same / len(p_tokens)
    recall = same / len(g_tokens)
    return 2 * precision * recall / (precision + recall), precision, recall


def f1(prediction: str, gold: str) -> float:
    """Token F1 (see ``f1_precision_recall``).

    >>> round(f1("Denise Levertov", "Levertov"), 3)
    0.667
    """
    return f1_precision_recall(prediction, gold)[0]


def qa_scores(prediction: str, gold: str | Sequence[str]) -> dict[str, float]:
    """``{"em", "f1"}`` of one answer against a gold answer, or the best of several (aliases): each
    metric takes its maximum over them, as SQuAD's evaluation does.

    >>> qa_scores("NYC", ["New York City", "NYC"])
    {'em': 1.0, 'f1': 1.0}
    """
    golds = [gold] if isinstance(gold, str) else list(gold)
    return {"em": max(exact_match(prediction, g) for g in golds), "f1": max(f1(prediction, g) for g in golds)}


def mean_stderr(values: Iterable[float]) -> tuple[float, float]:
    """Mean and standard error of the mean (sample std / sqrt(n)); (nan, nan) for no values.

    >>> tuple(round(x, 4) for x in mean_stderr([1.0, 0.0, 1.0, 0.0]))
    (0.5, 0.2887)
    """
    xs = list(values)
    n = len(xs)
    if n == 0:
        return math.nan, math.nan
    m = sum(xs) / n
    if n == 1:
        return m, 0.0
    var = sum((x - m) ** 2 for x in xs) / (n - 1)
    return m, math.sqrt(var / n)


def aggregate(rows: Iterable[Mapping[str, float]], keys: Iterable[str] | None = None) -> dict[str, dict]:
    """Mean and stderr of each score key over rows: ``{"em": {"mean", "stderr", "n"}, ...}``."""
    rows = list(rows)
    keys = list(keys) if keys is not None else sorted({k for r in rows for k in r})
    out = {}
    for k in keys:
        vals = [float(r[k]) for r in rows if k in r]
        m, se = mean_stderr(vals)
        out[k] = {"mean": m, "stderr": se, "n": len(vals)}
    return out


FEVER_LABELS = ("SUPPORTS", "REFUTES", "NOT ENOUGH INFO")
_FEVER_FORMS = (
    ("NOT ENOUGH INFO", ("not enough info", "not enough information", "notenoughinfo", "nei", "not enough")),
    ("SUPPORTS", ("supports", "supported", "support", "true")),
    ("REFUTES", ("refutes", "refuted", "refute", "false")),
)


def fever_label(answer: str) -> str:
    """A finish answer as a FEVER label (``""`` when it is none): the label itself in any case, or
    a plain variant (``supported``, ``refuted``, ``not enough information``) at its start.

    >>> [fever_label(a) for a in ("SUPPORTS", "refuted.", "Not enough info", "NOT ENOUGH INFORMATION", "maybe")]
    ['SUPPORTS', 'REFUTES', 'NOT ENOUGH INFO', 'NOT ENOUGH INFO', '']
    """
    a = " ".join(answer.strip().strip(".!\"'").lower().replace("_", " ").split())
    for label, forms in _FEVER_FORMS:
        if any(a == f or a.startswith(f + " ") or a.startswith(f + ",") for f in forms):
            return label
    return ""


def yes_no(answer: str) -> str:
    """``"yes"`` / ``"no"`` when the answer starts with it (FireAct's StrategyQA rule, after
    lower-casing and stripping punctuation), else ``""``.

    >>> [yes_no(a) for a in ("Yes", "no, it is not", "Yes.", "True", "nope", "")]
    ['yes', 'no', 'yes', '', '', '']
    """
    words = re.findall(r"[a-z]+", answer.lower())
    return words[0] if words and words[0] in ("yes", "no") else ""


_LETTER = re.compile(r"^\(?([A-Za-z])\)?(?:$|[\s.:,)\]])")
_LETTER_SAID = re.compile(r"\b(?:answer|option|choice)\s*(?:is|:)?\s*\(?([A-D])\b\)?", re.IGNORECASE)


def choice_letter(answer: str, options: Sequence[str] = (), letters: str = "ABCD") -> str:
    """The option letter a free-text answer picks, ``""`` when none: a leading letter (``B``,
    ``(b)``, ``B. Paris``), ``the answer is C``, or the text of exactly one option.

    >>> [choice_letter(a) for a in ("B", "(c) 42", "d. none of these", "The answer is A.", "E", "maybe")]
    ['B', 'C', 'D', 'A', '', '']
    >>> choice_letter("Paris", ["London", "Paris", "Rome", "Oslo"])
    'B'
    """
    a = answer.strip()
    m = _LETTER.match(a)
    if m and m.group(1).upper() in letters:
        return m.group(1).upper()
    m = _LETTER_SAID.search(a)
    if m and m.group(1).upper() in letters:
        return m.group(1).upper()
    norm = normalize_answer(a)
    hits = [letters[i] for i, o in enumerate(options[: len(letters)]) if norm and normalize_answer(str(o)) == norm]
    return hits[0] if len(hits) == 1 else ""
