"""Read page corpora into ``Page`` records: this pack's JSONL, HotpotQA's fullwiki abstracts and
BEIR ``corpus.jsonl`` (split into sentences), plain, ``.gz`` or ``.bz2``. Malformed input is an
error, not a skip: ``CorpusError`` names the file, the line and the field.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reactlab.io import DataError, iter_jsonl


class CorpusError(DataError):
    """A corpus file (or context list) is malformed; the message reads ``file:line: what``."""


@dataclass
class Page:
    """One Wikipedia page: a title and its sentences (stripped; empty sentences dropped).

    >>> Page("Ed Wood", [" Edward Davis Wood Jr. was a filmmaker.", " "]).sentences
    ['Edward Davis Wood Jr. was a filmmaker.']
    """

    title: str
    sentences: list[str] = field(default_factory=list)
    source: str = ""

    def __post_init__(self) -> None:
        # HotpotQA stores every sentence after the first with a leading space (" He illustrated ...").
        self.sentences = [s.strip() for s in self.sentences if s and s.strip()]


# --- sentence splitting (BEIR paragraphs) -----------------------------------------------------------

# Words that end in a period without ending a sentence. Case-sensitive on purpose: "Dr. No" must not
# split, but "... said no. Then" may. Conservative: a missed split costs little (a longer sentence),
# a wrong split cuts a fact in half.
_ABBREVIATION_WORDS = (
    "Mr Mrs Ms Dr Prof St Sr Jr Gen Col Lt Capt Cmdr Sgt Maj Adm Gov Sen Rep Rev Hon Pres Fr Br Mt Ft "
    "No Nos Vol Vols Ch Art Fig Inc Co Corp Ltd Bros Jan Feb Mar Apr Jun Jul Aug Sep Sept Oct Nov Dec "
    "vs etc approx ca cf al viz Op pp Esq"
)
_ABBREVIATIONS = frozenset(_ABBREVIATION_WORDS.split())
# A candidate boundary: terminal punctuation, optional closing quotes/brackets, whitespace, then the
# start of a new sentence (a capital, a digit, or an opening quote/bracket).
_BOUNDARY = re.compile(r"[.?!][\"'\u201d\u2019)\]]*\s+(?=[\"'\u201c\u2018(\[]?[A-Z0-9])")
_WORD_BEFORE = re.compile(r"(\S+)$")
_ACRONYM = re.compile(r"^(?:[A-Za-z]\.)+[A-Za-z]$")  # "U.S", "e.g", "J.R.R" (the final "." is cut)


def split_sentences(text: str) -> list[str]:
    """Split a paragraph into sentences, conservatively.

    A sentence ends at ``.``, ``?`` or ``!`` followed by whitespace and a capital, digit or opening
    quote, except after initials, dotted acronyms and common abbreviations.

    >>> split_sentences("The U.S. Army was there. Dr. No is a film! J. R. R. Tolkien wrote it.")
    ['The U.S. Army was there.', 'Dr. No is a film!', 'J. R. R. Tolkien wrote it.']
    >>> split_sentences("It sold 5 m. copies. 1999 was good.")
    ['It sold 5 m. copies.', '1999 was good.']
    >>> split_sentences("   ")
    []
    """
    out: list[str] = []
    start = 0
    for m in _BOUNDARY.finditer(text):
        if text[m.start()] == ".":
            before = _WORD_BEFORE.search(text, 0, m.start())
            word = before.group(1).lstrip("\"'(\u201c\u2018[") if before else ""
            if (len(word) == 1 and word.isupper()) or word in _ABBREVIATIONS or _ACRONYM.match(word):
                continue
        out.append(text[start : m.end()].strip())
        start = m.end()
    out.append(text[start:].strip())
    return [s for s in out if s]


# --- reading files --------------------------------------------------------------------------------

_LINK = re.compile(r"</?a\b[^>]*>", re.IGNORECASE)


def _sentences(value: Any, where: str, layout: str) -> list[str]:
    """Turn a ``text`` field (str, list of str, or list of lists of str) into sentences."""
    if isinstance(value, str):
        return split_sentences(value)
    if not isinstance(value, list):
        raise CorpusError(
            f"{where}: field 'text' must be a list of sentences or a string, got {type(value).__name__}"
        )
    out: list[str] = []
    for i, item in enumerate(value):
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, list):  # HotpotQA full wiki: paragraphs, each a list of sentences
            for j, s in enumerate(item):
                if not isinstance(s, str):
                    raise CorpusError(
                        f"{where}: field 'text[{i}][{j}]' must be a string, got {type(s).__name__}"
                    )
                out.append(s)
        else:
            raise CorpusError(f"{where}: field 'text[{i}]' must be a string, got {type(item).__name__}")
    if layout == "hotpotqa":
        out = [_LINK.sub("", s) for s in out]
    return out


def page_from_record(d: Any, where: str) -> Page:
    """Build a :class:`Page` from one decoded JSON record of any supported layout.

    ``where`` (``"file:line"``) prefixes error messages.

    >>> page_from_record({"_id": "7", "title": "X", "text": "A b. C d."}, "c.jsonl:1").sentences
    ['A b.', 'C d.']
    """
    if not isinstance(d, dict):
        raise CorpusError(f"{where}: expected a JSON object, got {type(d).__name__}")
    if "title" not in d:
        raise CorpusError(f"{where}: field 'title' missing")
    title = d["title"]
    if not isinstance(title, str):
        raise CorpusError(f"{where}: field 'title' must be a string, got {type(title).__name__}")
    if not title.strip():
        raise CorpusError(f"{where}: field 'title' is empty")
    if "text" not in d:
        raise CorpusError(f"{where}: field 'text' missing")
    if "_id" in d:
        layout, default_source = "beir", "beir"
    elif "url" in d or "id" in d:
        layout, default_source = "hotpotqa", "hotpotqa-abstracts"
    else:
        layout, default_source = "pack", ""
    source = d.get("source")
    if source is not None and not isinstance(source, str):
        raise CorpusError(f"{where}: field 'source' must be a string, got {type(source).__name__}")
    return Page(title.strip(), _sentences(d["text"], where, layout), source or default_source)


def read_corpus(path: str | Path) -> Iterator[Page]:
    """Yield the pages of one JSONL corpus file (``.jsonl``, ``.jsonl.gz`` or ``.jsonl.bz2``).

    The layout is detected per line (see the module docstring); blank lines are skipped. Raises
    :class:`CorpusError` (``file:line: field 'x' ...``) on the first malformed line, and
    ``FileNotFoundError`` when the file is missing.
    """
    for where, d in iter_jsonl(Path(path), error=CorpusError):
        yield page_from_record(d, where)


def pages_from_contexts(items: Iterable[Any], source: str = "hotpotqa") -> Iterator[Page]:
    """Yield pages from HotpotQA ``context`` lists: ``[[title, [sentences]], ...]``.

    ``items`` may hold context lists, raw HotpotQA example dicts (with ``"context"``) or
    :class:`~reactlab.types.Example` records (with ``meta["context"]``). A title seen twice yields
    only its first page. Malformed entries raise :class:`CorpusError` (``context[i][j]: ...``).

    >>> [p.title for p in pages_from_contexts([[["A", ["x."]], ["B", [" y."]], ["A", ["z."]]]])]
    ['A', 'B']
    """
    seen: set[str] = set()
    for i, item in enumerate(items):
        if isinstance(item, dict):
            context = item.get("context", [])
        elif hasattr(item, "meta"):
            context = item.meta.get("context", [])
        else:
            context = item
        if not isinstance(context, list):
            raise CorpusError(
                f"context[{i}]: expected a list of [title, sentences], got {type(context).__name__}"
            )
        for j, entry in enumerate(context):
            where = f"context[{i}][{j}]"
            if not (isinstance(entry, (list, tuple)) and len(entry) == 2):
                raise CorpusError(f"{where}: expected [title, sentences]")
            title, sents = entry
            if not isinstance(title, str) or not title.strip():
                raise CorpusError(f"{where}: field 'title' must be a non-empty string")
            title = title.strip()
            if title in seen:
                continue
            seen.add(title)
            yield Page(title, _sentences(sents, where, "context"), source)
