"""bench/wiki_search.py: the synthetic corpus of ``--scale`` and the scale mode end to end (small N)."""

from collections import Counter

import numpy as np
import pytest

from reactlab.wiki.index import WikiIndex


@pytest.fixture(scope="module")
def ws(load_bench):
    return load_bench("wiki_search")


@pytest.fixture(scope="module")
def corpus(ws):
    return ws.SynthCorpus(3000, seed=1, vocab=5000)


def test_deterministic_for_a_seed(ws, corpus):
    again = ws.SynthCorpus(3000, seed=1, vocab=5000)
    assert list(again) == list(corpus)
    other = ws.SynthCorpus(3000, seed=2, vocab=5000)
    assert [p.title for p in other] != [p.title for p in corpus]
    assert other.chunk(0)[0].sentences != corpus.chunk(0)[0].sentences


def test_titles_are_unique_and_computed_from_the_page_number(ws, corpus):
    pages = list(corpus)
    assert len(pages) == 3000
    assert corpus.titles(np.arange(3000)) == [p.title for p in pages]
    assert corpus.titles(np.array([2999, 7])) == [pages[2999].title, pages[7].title]
    # Far more pages than name words (W ~ 4,900): the two-word part must still be unique.
    big = ws.SynthCorpus(200_000, seed=3, vocab=5000)
    titles = big.titles(np.arange(200_000))
    assert len(set(titles)) == len(titles)
    words = Counter(len(t.split(" (")[0].split()) for t in titles)
    assert set(words) == {1, 2, 3, 4} and words[1] <= 5000  # one-word titles: at most one per name word
    disambiguated = sum(t.endswith(")") for t in titles) / len(titles)
    assert 0.08 < disambiguated < 0.12


def test_pages_look_like_abstracts(ws, corpus):
    pages = list(corpus)
    assert all(3 <= len(p.sentences) <= 5 for p in pages)
    lengths = [len(s.split()) for p in pages for s in p.sentences]
    # 10-25 words, a title of up to 4 words standing for one of them (at most twice per sentence)
    assert min(lengths) >= 10 and max(lengths) <= 31 and 15 <= np.median(lengths) <= 20
    assert all(s[0].isupper() and s.endswith(".") for p in pages for s in p.sentences)
    opens = sum(p.sentences[0].startswith(p.title.split(" (")[0] + " ") for p in pages) / len(pages)
    assert 0.75 < opens < 0.85  # "<title> is/was ..." in ~80% of pages


def test_other_titles_are_mentioned(ws):
    small = ws.SynthCorpus(200, seed=0, vocab=3000)
    pages = list(small)
    bases = {p.title.split(" (")[0] for p in pages}
    sentences = [s for p in pages for s in p.sentences]
    inner = [s for s in sentences if any(f" {b} " in s for b in bases)]
    assert 0.2 < len(inner) / len(sentences) < 0.5  # ~30% of sentences, plus chance word matches


def test_zipf_head(ws, corpus):
    counts = Counter(w.strip(".").lower() for p in corpus for s in p.sentences for w in s.split())
    top = [w for w, _ in counts.most_common(10)]
    assert top[0] == "the" and set(top) <= set(ws.FUNCTION_WORDS)
    # rank 1 vs rank 10 of a Zipf law with exponent ~1.05: ~11x
    assert 6 < counts["the"] / counts[ws.FUNCTION_WORDS[9]] < 20
    total = sum(counts.values())
    assert 0.05 < counts["the"] / total < 0.09
    assert len(counts) > 4000  # the tail is drawn too: most of the 5,000 word forms appear


def test_scale_mode_end_to_end(ws, tmp_path, capsys):
    args = ["--scale", "2000", "--vocab", "5000", "--n", "30", "--home", str(tmp_path)]
    ws.main(args)
    out = capsys.readouterr().out
    assert "synthetic corpus: 2,000 pages, seed 0, 5,000 word forms" in out
    assert "generation " in out and " + index build " in out
    for line in ("CPU: ", "index size on disk: ", "peak RSS: ", "exact-title hit rate: 10/10 = 100.0%"):
        assert line in out
    assert "target p50 <= 20 ms overall: " in out
    for kind in ("exact", "misspelled", "free text", "overall"):
        assert f"\n{kind:<12}" in out
    (db,) = tmp_path.glob("synth-n2000-seed0-vocab5000-*.sqlite")
    with WikiIndex.open(db) as index:
        assert index.stats()["pages"] == 2000
    ws.main(args)  # the same N and seed in the same --home: opened, not rebuilt
    again = capsys.readouterr().out
    assert "opened the one already in --home, not rebuilt" in again and "generation " not in again
    assert list(tmp_path.iterdir()) == [db]
