"""Stop strings: where a generated text ends. Every backend cuts here (the HTTP backend too: APIs
accept only a few stop strings and some servers ignore them), so one rule holds everywhere: the
earliest occurrence of any stop string wins, the longest one on a tie, empty stops are ignored.
"""

from __future__ import annotations

from collections.abc import Sequence


def find_stop(text: str, stops: Sequence[str]) -> tuple[int, str] | None:
    """``(index, stop)`` of the earliest stop string in ``text`` (the longest one at a tie), or None.

    >>> find_stop("a\\nObservation 1", ["\\nObs", "\\n"])
    (1, '\\nObs')
    >>> find_stop("no stop here", ["\\n", ""]) is None
    True
    """
    best: tuple[int, str] | None = None
    for s in stops:
        if not s:
            continue
        i = text.find(s)
        if i >= 0 and (best is None or i < best[0] or (i == best[0] and len(s) > len(best[1]))):
            best = (i, s)
    return best


def cut_at_stop(text: str, stops: Sequence[str]) -> tuple[str, str | None]:
    """Cut ``text`` at its earliest stop string (``find_stop``); return ``(text, stop_or_None)``.

    >>> cut_at_stop("Thought: go\\nObservation 1: x", ["\\nObservation"])
    ('Thought: go', '\\nObservation')
    >>> cut_at_stop("no stop here", ["\\n"])
    ('no stop here', None)
    """
    hit = find_stop(text, stops)
    return (text, None) if hit is None else (text[: hit[0]], hit[1])
