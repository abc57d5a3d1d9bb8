"""Corpus readers: the three layouts, compressed files, contexts, and errors that say where."""

from __future__ import annotations

import bz2
import doctest
import gzip
import json

import pytest

from reactlab.types import Example
from reactlab.wiki import corpus
from reactlab.wiki.corpus import CorpusError, Page, pages_from_contexts, read_corpus, split_sentences


def write_jsonl(path, records, raw_lines=()):
    text = "".join(json.dumps(r) + "\n" for r in records) + "".join(raw_lines)
    opener = gzip.open if path.name.endswith(".gz") else bz2.open if path.name.endswith(".bz2") else open
    with opener(path, "wt", encoding="utf-8") as f:
        f.write(text)
    return path


def test_doctests():
    assert doctest.testmod(corpus).failed == 0


def test_page_strips_and_drops_empty_sentences():
    assert Page("T", [" a.", "", "  ", "b. "]).sentences == ["a.", "b."]


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz", ".jsonl.bz2"])
def test_pack_layout_any_compression(tmp_path, suffix):
    recs = [
        {
            "title": "Ed Wood",
            "text": ["Ed Wood was a filmmaker.", " He was born in 1924."],
            "source": "hotpotqa",
        },
        {"title": "No Source", "text": ["x."]},
    ]
    pages = list(read_corpus(write_jsonl(tmp_path / f"c{suffix}", recs)))
    assert pages == [
        Page("Ed Wood", ["Ed Wood was a filmmaker.", "He was born in 1924."], "hotpotqa"),
        Page("No Source", ["x."], ""),
    ]


def test_hotpotqa_abstracts_layout(tmp_path):
    recs = [
        {
            "id": "12",
            "url": "https://en.wikipedia.org/wiki?curid=12",
            "title": "Anarchism",
            "text": ["Anarchism is a political philosophy.", ' It rejects <a href="State">states</a>.'],
            "text_with_links": ["ignored"],
            "charoffset": [[]],
        },
        # the full-wiki variant: paragraphs, each a list of sentences
        {"id": "13", "url": "u", "title": "Paragraphs", "text": [["P1 s1.", " P1 s2."], ["P2 s1."]]},
    ]
    pages = list(read_corpus(write_jsonl(tmp_path / "wiki_00.bz2", recs)))
    assert pages[0] == Page(
        "Anarchism", ["Anarchism is a political philosophy.", "It rejects states."], "hotpotqa-abstracts"
    )
    assert pages[1].sentences == ["P1 s1.", "P1 s2.", "P2 s1."]


def test_beir_layout_splits_sentences(tmp_path):
    recs = [
        {
            "_id": "doc1",
            "title": "Dr. No",
            "metadata": {},
            "text": "Dr. No is a 1962 spy film. It stars Sean Connery as James Bond. The U.S. Army appears.",
        }
    ]
    (page,) = read_corpus(write_jsonl(tmp_path / "corpus.jsonl", recs))
    assert page == Page(
        "Dr. No",
        ["Dr. No is a 1962 spy film.", "It stars Sean Connery as James Bond.", "The U.S. Army appears."],
        "beir",
    )


@pytest.mark.parametrize(
    "text, expected",
    [
        ("One. Two.", ["One.", "Two."]),
        ('Is it? Yes! "Quoted." Fine.', ["Is it?", "Yes!", '"Quoted."', "Fine."]),
        ("J. R. R. Tolkien wrote it. Mr. Smith agreed.", ["J. R. R. Tolkien wrote it.", "Mr. Smith agreed."]),
        ("He served in the U.S. Army. Then he left.", ["He served in the U.S. Army.", "Then he left."]),
        ("Founded in 1999. 2000 was better.", ["Founded in 1999.", "2000 was better."]),
        ("version 1.5 is out. e.g. this", ["version 1.5 is out. e.g. this"]),
        ("", []),
    ],
)
def test_split_sentences(text, expected):
    assert split_sentences(text) == expected


def test_blank_lines_are_skipped(tmp_path):
    p = tmp_path / "c.jsonl"
    p.write_text('\n{"title": "A", "text": ["a."]}\n\n  \n{"title": "B", "text": ["b."]}\n')
    assert [x.title for x in read_corpus(p)] == ["A", "B"]


@pytest.mark.parametrize(
    "line, message",
    [
        ("{not json", ":3: invalid JSON ("),
        ('{"text": ["a."]}', ":3: field 'title' missing"),
        ('{"title": "", "text": ["a."]}', ":3: field 'title' is empty"),
        ('{"title": 5, "text": ["a."]}', ":3: field 'title' must be a string, got int"),
        ('{"title": "T"}', ":3: field 'text' missing"),
        ('{"title": "T", "text": 7}', ":3: field 'text' must be a list of sentences or a string, got int"),
        ('{"title": "T", "text": ["ok", 3]}', ":3: field 'text[1]' must be a string, got int"),
        ('{"title": "T", "text": [["ok", null]]}', ":3: field 'text[0][1]' must be a string, got NoneType"),
        ('{"title": "T", "text": [], "source": 1}', ":3: field 'source' must be a string, got int"),
        ('["title", "T"]', ":3: expected a JSON object, got list"),
    ],
)
def test_malformed_lines_name_file_line_and_field(tmp_path, line, message):
    p = write_jsonl(
        tmp_path / "corpus.jsonl",
        [{"title": "A", "text": ["a."]}, {"title": "B", "text": []}],
        raw_lines=[line + "\n"],
    )
    with pytest.raises(CorpusError) as e:
        list(read_corpus(p))
    assert str(e.value).startswith(f"{p}:3: ") and message in str(e.value)
    assert isinstance(e.value, ValueError)


def test_invalid_utf8_and_truncated_gzip(tmp_path):
    p = tmp_path / "c.jsonl"
    p.write_bytes(b'{"title": "A", "text": ["a."]}\n{"title": "\xff"}\n')
    with pytest.raises(CorpusError, match=r"c\.jsonl:2: invalid JSON"):
        list(read_corpus(p))
    g = write_jsonl(tmp_path / "c.jsonl.gz", [{"title": f"T{i}", "text": ["x" * 50]} for i in range(200)])
    g.write_bytes(g.read_bytes()[:-30])
    with pytest.raises(CorpusError, match=r"c\.jsonl\.gz:\d+: cannot read"):
        list(read_corpus(g))


def test_pages_from_contexts_accepts_lists_dicts_and_examples():
    ctx = [["Ed Wood", ["Ed Wood was a filmmaker.", " He was born in 1924."]], ["Other", ["x."]]]
    ex = Example(
        id="1", question="?", answer="", meta={"context": [["Third", [" y."]], ["Ed Wood", ["dup."]]]}
    )
    pages = list(pages_from_contexts([ctx, {"context": ctx}, ex]))
    assert [p.title for p in pages] == ["Ed Wood", "Other", "Third"]
    assert pages[0].sentences == ["Ed Wood was a filmmaker.", "He was born in 1924."]
    assert pages[2] == Page("Third", ["y."], "hotpotqa")


@pytest.mark.parametrize(
    "ctx, message",
    [
        ([["only title"]], r"context\[0\]\[0\]: expected \[title, sentences\]"),
        ([["", ["x."]]], r"context\[0\]\[0\]: field 'title'"),
        ([["T", 5]], r"context\[0\]\[0\]: field 'text' must be"),
        ("not a list", r"context\[0\]: expected a list"),
    ],
)
def test_pages_from_contexts_errors(ctx, message):
    with pytest.raises(CorpusError, match=message):
        list(pages_from_contexts([ctx]))
