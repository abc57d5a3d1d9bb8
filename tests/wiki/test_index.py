"""The SQLite index: title lookups, BM25 similar titles, the content-addressed cache, extra pages."""

from __future__ import annotations

import doctest
import json
import os
import sqlite3
import threading

import pytest

from reactlab.wiki import index as index_mod
from reactlab.wiki.corpus import Page
from reactlab.wiki.index import WikiIndex, build_index, get_index, normalize_title


def write_corpus(path, pages):
    path.write_text("".join(json.dumps({"title": t, "text": s}) + "\n" for t, s in pages))
    return path


def test_doctests():
    assert doctest.testmod(index_mod).failed == 0


@pytest.mark.parametrize(
    "query, title",
    [
        ("Scott Derrickson", "Scott Derrickson"),  # exact
        ("scott derrickson", "Scott Derrickson"),  # case-insensitive
        ("  Scott   derrickson ", "Scott Derrickson"),  # normalised whitespace
        ("Beyoncé", "Beyoncé"),
        ("beyonce", "Beyoncé"),  # diacritics
        ("BEYONCÉ", "Beyoncé"),
        ("Julie & Julia", "Julie &amp; Julia"),  # HotpotQA's HTML-escaped titles
        ("ed wood (film)", "Ed Wood (film)"),
        ("It", "It"),  # exact wins over case-insensitive
        ("IT", "IT"),
        ("iT", "IT"),  # tie: smallest title in code-point order
    ],
)
def test_get(small_index, query, title):
    page = small_index.get(query)
    assert page is not None and page.title == title


def test_get_returns_the_stored_page(small_index):
    page = small_index.get("Scott Derrickson")
    assert page == Page(
        "Scott Derrickson",
        [
            "Scott Derrickson (born July 16, 1966) is an American director, screenwriter and producer.",
            "He lives in Los Angeles, California.",
            "He is best known for directing horror films such as Sinister.",
        ],
        "test",
    )


@pytest.mark.parametrize(
    "query", ["Scott Derricksen", "", "   ", "?!", "Ed", "x" * 100_000, "a\x00b", "\ud800"]
)
def test_get_misses(small_index, query):
    assert small_index.get(query) is None


def test_similar_ranks_title_matches_first(small_index):
    assert small_index.similar("Ed Wood")[:2] == ["Ed Wood", "Ed Wood (film)"]
    assert small_index.similar("Derrickson")[0] == "Scott Derrickson"
    # a text-only match still counts, below the title match
    assert small_index.similar("sinister") == ["Sinister (film)", "Scott Derrickson"]
    assert small_index.similar("beyonce") == ["Beyoncé"]
    assert small_index.similar("Ed Wood", k=1) == ["Ed Wood"]
    assert small_index.similar("zzzz") == [] and small_index.similar("!!") == []


def test_similar_is_deterministic(small_index):
    assert small_index.similar("American film") == small_index.similar("American film")


def test_stats(small_index, tmp_path):
    s = small_index.stats()
    assert s["pages"] == 8 and s["sentences"] == 10 and s["sources"] == {"test": 8}
    assert s["db_bytes"] > 0 and s["index_version"] == index_mod.INDEX_VERSION


def test_build_keeps_first_duplicate_and_is_atomic(tmp_path):
    db = tmp_path / "sub" / "x.sqlite"
    build_index([Page("A", ["first."]), Page("A", ["second."])], db)
    assert sorted(p.name for p in db.parent.iterdir()) == ["x.sqlite"]  # no temp file left behind
    with WikiIndex.open(db) as ix:
        assert ix.get("A").sentences == ["first."]


def _content(db):
    """Everything a reader sees of an index file, except its build time."""
    con = sqlite3.connect(db)
    try:
        con.execute("CREATE VIRTUAL TABLE temp.v USING fts5vocab(main, 'fts', 'instance')")
        return {
            "pages": con.execute("SELECT * FROM pages ORDER BY id").fetchall(),
            "meta": con.execute("SELECT * FROM meta WHERE key != 'built_at' ORDER BY key").fetchall(),
            "terms": con.execute("SELECT * FROM terms ORDER BY term").fetchall(),
            "fts_config": con.execute("SELECT * FROM fts_config ORDER BY k").fetchall(),
            "postings": con.execute("SELECT * FROM temp.v ORDER BY term, doc, col, offset").fetchall(),
        }
    finally:
        con.close()


def test_build_result_does_not_depend_on_the_batch_size(tmp_path):
    words = ["alpha", "beta", "gamma", "delta", "the"]
    pages = [
        Page(f"T{i % 70}", [f"{words[i % 5]} page {i}.", f"{words[(i * 3) % 5]} more {i % 7}."], f"s{i % 2}")
        for i in range(100)  # titles repeat from page 70 on: across batches of 3, within the big one
    ]
    pages += [Page("T5", ["a late duplicate."]), Page("Ünïcode &amp; co", ["x &amp; y."])]
    one = build_index(pages, tmp_path / "one.sqlite", meta={"k": "v"})
    tiny = build_index(iter(pages), tmp_path / "tiny.sqlite", meta={"k": "v"}, batch_size=3)
    a, b = _content(one), _content(tiny)
    assert a == b
    assert [r[0] for r in a["pages"]] == list(range(1, 72))  # ids stay dense, in first-seen order
    assert a["fts_config"] == [("rank", "bm25(10.0, 1.0)"), ("version", 4)]  # no build-only settings
    assert a["pages"][5][1:] == ("T5", "t5", "t5", '["alpha page 5.", "alpha more 5."]', "s1")
    with WikiIndex.open(one) as x, WikiIndex.open(tiny) as y:
        for q in ["alpha more", "gamma page 42", "T69", "unicode", "late duplicate", "the"]:
            assert x.similar(q) == y.similar(q)
        assert y.get("T5").sentences == ["alpha page 5.", "alpha more 5."]  # the first page of a title
    with pytest.raises(ValueError, match="batch_size"):
        build_index(pages, tmp_path / "bad.sqlite", batch_size=0)


def test_build_failure_leaves_nothing(tmp_path):
    def pages():
        yield Page("A", ["a."])
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        build_index(pages(), tmp_path / "x.sqlite")
    assert list(tmp_path.iterdir()) == []


def test_open_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        WikiIndex.open(tmp_path / "missing.sqlite")
    sqlite3.connect(tmp_path / "old.sqlite").executescript("CREATE TABLE meta (key, value);")
    with pytest.raises(ValueError, match="index version"):
        WikiIndex.open(tmp_path / "old.sqlite")


def test_get_index_rebuilds_exactly_when_the_corpus_changes(tmp_path, monkeypatch):
    monkeypatch.setenv("REACTLAB_HOME", str(tmp_path / "home"))
    corpus = write_corpus(tmp_path / "c.jsonl", [("Alpha", ["a."]), ("Beta", ["b."])])
    with get_index([corpus]) as ix:
        first = ix.path
        assert ix.get("alpha").title == "Alpha"
    assert first.parent == tmp_path / "home" / "wiki"
    mtime = first.stat().st_mtime_ns
    os.utime(corpus)  # touching the corpus (new mtime, same bytes) must not rebuild
    with get_index([corpus]) as ix:
        assert ix.path == first and first.stat().st_mtime_ns == mtime
    write_corpus(corpus, [("Alpha", ["a changed."]), ("Beta", ["b."])])
    with get_index([corpus]) as ix:
        assert ix.path != first and ix.get("Alpha").sentences == ["a changed."]
        assert ix.stats()["corpus_hash"] == ix.path.stem


def test_get_index_home_argument_and_directories(tmp_path):
    d = tmp_path / "corpora"
    d.mkdir()
    write_corpus(d / "a.jsonl", [("Alpha", ["a."])])
    write_corpus(d / "b.jsonl", [("Alpha", ["later corpus loses."]), ("Beta", ["b."])])
    (d / "README.txt").write_text("not a corpus")
    with get_index([d], home=tmp_path / "h") as ix:
        assert ix.path.parent == tmp_path / "h" / "wiki"
        assert ix.get("Alpha").sentences == ["a."] and ix.get("Beta") is not None
    with pytest.raises(FileNotFoundError):
        get_index([tmp_path / "nope.jsonl"], home=tmp_path / "h")


def test_extra_pages_only_add_missing_titles(tmp_path):
    corpus = write_corpus(tmp_path / "c.jsonl", [("Alpha", ["corpus text."])])
    extra = [Page("Alpha", ["context text."]), Page("Gamma", ["g."], "hotpotqa")]
    with get_index([corpus], home=tmp_path) as plain:
        plain_path = plain.path
        assert plain.get("Gamma") is None
    with get_index([corpus], extra_pages=extra, home=tmp_path) as ix:
        assert ix.path != plain_path  # the extra pages are part of the key
        assert ix.get("Alpha").sentences == ["corpus text."]  # existing corpus text wins
        assert ix.get("Gamma").sentences == ["g."]
    with get_index([corpus], extra_pages=iter(extra), home=tmp_path) as again:  # any iterable
        assert again.path == ix.path


def test_threads_share_one_index(small_index):
    errors = []

    def work():
        try:
            for _ in range(50):
                assert small_index.get("ed wood").title == "Ed Wood"
                assert small_index.similar("Ed Wood")[0] == "Ed Wood"
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_common_words_are_dropped_but_the_rarest_term_is_kept(tmp_path, monkeypatch):
    pages = [Page(f"Common {i}", [f"the page number {i}."]) for i in range(300)] + [
        Page("Rare", ["the rare one."])
    ]
    with WikiIndex.open(build_index(pages, tmp_path / "x.sqlite")) as ix:
        monkeypatch.setattr(index_mod, "POSTINGS_BUDGET", 10)
        assert ix._affordable(["the", "rare"]) == ["rare"]
        assert ix._affordable(["the"]) == ["the"]
        assert ix.similar("the rare") == ["Rare"]
        assert len(ix.similar("the")) == 5


def test_normalize_title():
    assert normalize_title("Scott derrickson") == normalize_title("Scott Derrickson") == "scott derrickson"
    assert normalize_title("Beyoncé") == "beyonce"
    assert normalize_title("O'Brien") == normalize_title("OBrien")
    assert normalize_title("Spider-Man") == normalize_title("spider man")
    assert normalize_title("ﬁle") == "file"  # NFKD folds ligatures


def test_build_accepts_lone_surrogates_from_json(tmp_path):
    # json.loads accepts "\ud800" escapes; SQLite's UTF-8 encoder does not: they are replaced.
    page = Page(json.loads('"Odd \\ud800 title"'), [json.loads('"a \\udfff sentence."')], "s")
    with WikiIndex.open(build_index([page], tmp_path / "x.sqlite")) as ix:
        got = ix.get("Odd \ud800 title")
        assert got.title == "Odd \ufffd title" and got.sentences == ["a \ufffd sentence."]
