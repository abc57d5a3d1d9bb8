"""Benchmark the offline Wikipedia: index build time and ``search[...]`` latency through WikiEnv.

    .venv/bin/python bench/wiki_search.py [--n 1000] [--home DIR] [--seed 0]
    .venv/bin/python bench/wiki_search.py --scale 5000000 [--home DIR] [--vocab 300000]

Builds the vendored corpus's index into a fresh temp dir (or ``--home``), then times ``--n``
``WikiEnv.step(search[...])`` calls, split evenly over three kinds of query sampled with a fixed
seed: exact titles, misspelled titles (one random character edit) and free text (5-8 consecutive
words of a page's sentence). Prints build time, p50/p95/mean latency in ms per kind and overall,
and the hit rate of exact titles. Target: p50 <= 2 ms overall.

``--scale N`` indexes N synthetic pages instead (:class:`SynthCorpus`: Wikipedia-like abstracts
generated from ``--seed``, nothing downloaded) and times the same three kinds of query, one at a
time in this thread. It prints the CPU, generation and index build time, the index's size on disk,
the latency table, the exact-title hit rate and the process's peak RSS. Target: p50 <= 20 ms overall
(bm25s reports ~48 ms/query over 5.2M passages, single thread). With ``--home`` the index file
(named by N, seed, vocabulary and versions) is kept, and a later run with the same ones opens it
instead of building it again. The generator lives here, not in the package: it is this benchmark's
fixture, and the bench scripts are single files (tests load them by path).
"""

from __future__ import annotations

import argparse
import math
import random
import resource
import statistics
import string
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from reactlab.envs.wikienv import WikiEnv
from reactlab.hardware import cpu_name
from reactlab.types import Action, Example
from reactlab.wiki.corpus import Page
from reactlab.wiki.index import INDEX_VERSION, WikiIndex, build_index, get_index


def misspell(title: str, rng: random.Random) -> str:
    """One random edit: delete, insert, substitute or transpose a character."""
    i = rng.randrange(len(title))
    op = rng.choice("disw" if len(title) > 1 else "is")
    c = rng.choice(string.ascii_lowercase)
    if op == "d":
        return title[:i] + title[i + 1 :]
    if op == "i":
        return title[:i] + c + title[i:]
    if op == "s":
        return title[:i] + c + title[i + 1 :]
    i = min(i, len(title) - 2)
    return title[:i] + title[i + 1] + title[i] + title[i + 2 :]


def free_text(sentences: list[str], rng: random.Random) -> str:
    words = rng.choice(sentences).split()
    n = min(len(words), rng.randint(5, 8))
    start = rng.randrange(len(words) - n + 1)
    return " ".join(words[start : start + n])


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


# --- the synthetic corpus of --scale ------------------------------------------------------------------

SYNTH_VERSION = 1
"""Bump when the generator's output changes: a kept ``--home`` index is then built anew."""

SYNTH_CHUNK = 10_000
"""Pages per chunk; each chunk's text comes from its own random stream (seed, chunk number)."""

# The head of the distribution: common English words, roughly in Wikipedia's frequency order.
FUNCTION_WORDS = (
    "the", "of", "and", "in", "a", "to", "was", "is", "for", "on", "as", "by", "with", "he", "at", "from",
    "his", "an", "were", "are", "which", "it", "that", "also", "first", "be", "has", "its", "one", "after",
    "had", "who", "their", "new", "she", "or", "her", "they", "not", "but", "two", "been", "this",
    "between", "into", "when", "most", "other", "born", "known", "later", "under", "where", "three",
    "during", "there", "all", "more", "than", "only", "until", "while", "both", "second", "since", "time",
    "people", "can", "would", "some", "world", "national", "including", "american", "state", "team", "city",
    "university", "film", "series", "season", "album", "year", "years", "made", "such", "became", "used",
    "number", "called", "part", "well", "these", "many", "over", "may", "about", "united", "through",
    "century", "best",
)
# Syllables of the pseudo-words: onset + nucleus + coda ("" is no onset / no coda; repeats weigh).
_ONSETS = (
    "", "b", "c", "d", "f", "g", "h", "j", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "z", "br",
    "ch", "cl", "dr", "fr", "gr", "kr", "pl", "pr", "sh", "sk", "st", "th", "tr",
)
_NUCLEI = (
    "a", "e", "i", "o", "u", "a", "e", "i", "o", "a", "e", "ai", "ea", "ou", "ie", "oa", "y",
)
_CODAS = (
    "", "", "", "", "n", "r", "s", "l", "t", "m", "nd", "st", "rk", "ng", "ck", "ll",
)
DISAMBIGUATORS = (
    "film", "album", "band", "novel", "song", "footballer", "politician", "river", "village", "TV series",
    "musician", "singer", "actor", "company", "play", "ship",
)
_MASK = (1 << 64) - 1


def _mix(x: np.ndarray, salt: int) -> np.ndarray:
    """splitmix64 of ``x`` (uint64) under ``salt``: a deterministic pseudo-random uint64 per element."""
    z = x.astype(np.uint64) + np.uint64((0x9E3779B97F4A7C15 * (salt + 1)) & _MASK)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _coprime(x: int, n: int) -> int:
    """The first integer >= ``x`` that is coprime with ``n``."""
    while math.gcd(x, n) != 1:
        x += 1
    return x


class SynthCorpus:
    """``n`` Wikipedia-like abstracts generated from ``seed`` (iterate it for :class:`Page` records).

    Statistically an abstract: 3-5 sentences of 10-25 words drawn from a Zipf distribution
    (exponent :attr:`zipf`) over ``vocab`` word forms, the commonest being English function words,
    the rest pronounceable pseudo-words (shorter ones commoner). Titles are 1-4 capitalised words,
    10% with a disambiguator such as ``(film)``; most pages open with their title ("X is ..."), and
    about one sentence in three mentions another page's title.

    Titles are unique by construction and computed from the page number alone (:meth:`titles`),
    so a benchmark can sample queries without holding ``n`` titles in memory: page ``i`` gets
    ``p = (a i + b) mod n`` (a bijection), and words ``w1 = (u + h(v)) mod W``,
    ``w2 = (h'(w1) + v c) mod W`` of ``u, v = p mod W, p // W`` (``c`` coprime with ``W``), from
    which ``p`` can be recovered; one-word titles only for ``p < W``; the third and fourth words
    and the disambiguator are free.
    """

    zipf = 1.05

    def __init__(self, n: int, seed: int = 0, vocab: int = 300_000) -> None:
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        self.n, self.seed = n, seed
        rng = np.random.default_rng([seed, 0x5EED])
        sylls = [o + v + c for o in _ONSETS for v in _NUCLEI for c in _CODAS]  # repeats weigh
        words = dict.fromkeys(FUNCTION_WORDS)
        while len(words) < vocab:
            m = vocab - len(words) + 1000
            k = rng.choice(3, size=m, p=[0.3, 0.5, 0.2]) + 1
            parts = rng.integers(len(sylls), size=(m, 3)).tolist()
            for row, kk in zip(parts, k.tolist(), strict=True):
                words.setdefault("".join([sylls[j] for j in row[:kk]]))
        pseudo = list(words)[len(FUNCTION_WORDS) : vocab]
        noise = rng.normal(0.0, 3.0, size=len(pseudo))  # Zipf's law of abbreviation, loosely
        order = np.argsort(np.array([len(w) for w in pseudo]) + noise, kind="stable")
        self.words = list(FUNCTION_WORDS) + [pseudo[j] for j in order]
        self._lower = np.array(self.words, dtype=object)
        self._cap = np.array([w.capitalize() for w in self.words], dtype=object)
        self._dot = np.array([w + "." for w in self.words], dtype=object)
        # Title words: every word form but the function words, capitalised.
        self._names = self._cap[len(FUNCTION_WORDS) :]
        self._n_names = len(self._names)
        if n > min(self._n_names**2, 1 << 32):  # uint64 arithmetic in titles() stays exact below 2**32
            raise ValueError(f"n={n} pages: too many for a vocabulary of {vocab} (or for uint64 arithmetic)")
        self._a = _coprime(int(_mix(np.array([seed]), 1)[0]) % (1 << 31) | 1, n)
        self._b = int(_mix(np.array([seed]), 2)[0]) % n
        self._c = _coprime(int(_mix(np.array([seed]), 3)[0]) % self._n_names, self._n_names)

    def __len__(self) -> int:
        return self.n

    def titles(self, ids: np.ndarray, disambiguate: bool = True) -> list[str]:
        """The titles of pages ``ids`` (0-based page numbers); without the ``(...)`` part when not
        ``disambiguate`` (as the page's own text and other pages' mentions name it)."""
        i = np.asarray(ids, dtype=np.uint64)
        w_n = np.uint64(self._n_names)
        p = (i * np.uint64(self._a) + np.uint64(self._b)) % np.uint64(self.n)
        u, v = p % w_n, p // w_n
        w1 = (u + _mix(v, 11 + self.seed)) % w_n
        w2 = (_mix(w1, 12 + self.seed) % w_n + v * np.uint64(self._c)) % w_n
        common = np.uint64(min(20_000, self._n_names))  # later words: the commoner name words
        w3, w4 = _mix(p, 13 + self.seed) % common, _mix(p, 14 + self.seed) % common
        shape = (_mix(p, 15 + self.seed) >> np.uint64(11)).astype(np.float64) / float(1 << 53)
        k = 1 + np.searchsorted([0.15, 0.55, 0.8], shape, side="right")
        k[(k == 1) & (v > 0)] = 2  # one word identifies a page only among p < W
        dis = _mix(p, 16 + self.seed)
        names = self._names
        cols = [names[w1.astype(np.int64)], names[w2.astype(np.int64)], names[w3.astype(np.int64)]]
        cols.append(names[w4.astype(np.int64)])
        parts = [c.tolist() for c in cols]
        out = []
        for j, (kk, d) in enumerate(zip(k.tolist(), dis.tolist(), strict=True)):
            t = " ".join([parts[0][j], parts[1][j], parts[2][j], parts[3][j]][:kk])
            if disambiguate and d % 10 == 0:
                t += f" ({DISAMBIGUATORS[(d >> 8) % len(DISAMBIGUATORS)]})"
            out.append(t)
        return out

    def chunk(self, c: int) -> list[Page]:
        """The pages of chunk ``c``: page numbers ``c * SYNTH_CHUNK`` up to the next chunk or ``n``."""
        lo, hi = c * SYNTH_CHUNK, min(self.n, (c + 1) * SYNTH_CHUNK)
        m = hi - lo
        rng = np.random.default_rng([self.seed, c])
        n_sent = rng.integers(3, 6, size=m)
        lens = rng.integers(10, 26, size=int(n_sent.sum()))
        ends = np.cumsum(lens)
        starts = ends - lens
        # Zipf ranks by the continuous inverse CDF: a few array ops instead of a search per word.
        s1 = 1.0 - self.zipf
        top = float(len(self.words) + 1) ** s1 - 1.0
        x = (1.0 + rng.random(int(ends[-1])) * top) ** (1.0 / s1)
        ranks = np.minimum(x.astype(np.int64) - 1, len(self.words) - 1)
        toks = self._lower[ranks]
        toks[starts] = self._cap[ranks[starts]]
        toks[ends - 1] = self._dot[ranks[ends - 1]]
        # Another page's title in about a third of the sentences, never first or last word.
        men = np.flatnonzero(rng.random(len(lens)) < 0.3)
        if len(men):
            pos = starts[men] + 2 + (rng.random(len(men)) * (lens[men] - 3)).astype(np.int64)
            toks[pos] = self.titles(rng.integers(self.n, size=len(men)), disambiguate=False)
        # Most abstracts open with their subject: "<title> is/was ...".
        first = np.cumsum(n_sent) - n_sent  # each page's first sentence
        subj = np.flatnonzero(rng.random(m) < 0.8)
        if len(subj):
            toks[starts[first[subj]]] = self.titles(lo + subj, disambiguate=False)
            toks[starts[first[subj]] + 1] = np.where(rng.random(len(subj)) < 0.5, "is", "was")
        words = toks.tolist()
        sents = [" ".join(words[a:b]) for a, b in zip(starts.tolist(), ends.tolist(), strict=True)]
        titles = self.titles(np.arange(lo, hi))
        bounds = np.cumsum(n_sent).tolist()
        return [
            Page(t, sents[b - k : b], "synthetic")
            for t, b, k in zip(titles, bounds, n_sent.tolist(), strict=True)
        ]

    def __iter__(self) -> Iterator[Page]:
        for c in range(-(-self.n // SYNTH_CHUNK)):
            yield from self.chunk(c)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1000, help="search calls in total (split over 3 kinds)")
    ap.add_argument("--home", type=Path, default=None, help="cache dir (default: a fresh temp dir)")
    ap.add_argument("--seed", type=int, default=0, help="query sampling; with --scale also the corpus")
    ap.add_argument(
        "--scale", type=int, default=None, metavar="N", help="a synthetic corpus of N pages, not the vendored one"
    )
    ap.add_argument("--vocab", type=int, default=300_000, help="with --scale: word forms of the corpus")
    args = ap.parse_args(argv)
    run = bench_scale if args.scale is not None else bench
    if args.home is not None:
        run(args, args.home)
    else:  # a fresh cache, so the build is timed; removed afterwards (the vendored index is ~50 MB)
        with tempfile.TemporaryDirectory(prefix="reactlab-bench-") as tmp:
            run(args, Path(tmp))


def bench(args: argparse.Namespace, home: Path) -> None:
    t0 = time.perf_counter()
    index = get_index(home=home)
    build_s = time.perf_counter() - t0
    stats = index.stats()
    print(f"index: {stats['pages']} pages, {stats['sentences']} sentences, {stats['db_bytes'] / 1e6:.1f} MB")
    print(f"build (or open, if --home already held it): {build_s:.2f} s  [{stats['path']}]")
    rng = random.Random(args.seed)
    titles = list(index.titles())
    queries = sample_queries(index, lambda: rng.choice(titles), -(-args.n // 3), rng)
    report(index, queries, target_ms=2)
    index.close()


def bench_scale(args: argparse.Namespace, home: Path) -> None:
    n = args.scale
    t0 = time.perf_counter()
    corpus = SynthCorpus(n, seed=args.seed, vocab=args.vocab)
    gen_s = time.perf_counter() - t0
    db = home / f"synth-n{n}-seed{args.seed}-vocab{args.vocab}-g{SYNTH_VERSION}-i{INDEX_VERSION}.sqlite"
    print(f"synthetic corpus: {n:,} pages, seed {args.seed}, {args.vocab:,} word forms")
    print(f"CPU: {cpu_name()}")
    if db.is_file():
        print(f"index: opened the one already in --home, not rebuilt [{db}]")
    else:
        spent = [0.0]

        def pages() -> Iterator[Page]:
            for c in range(-(-n // SYNTH_CHUNK)):
                t = time.perf_counter()
                chunk = corpus.chunk(c)
                spent[0] += time.perf_counter() - t
                yield from chunk

        t0 = time.perf_counter()
        meta = {"synthetic": f"n={n} seed={args.seed} vocab={args.vocab} generator={SYNTH_VERSION}"}
        build_index(pages(), db, meta=meta)
        total = time.perf_counter() - t0 + gen_s
        gen_s += spent[0]
        print(f"generation {gen_s:.1f} s + index build {total - gen_s:.1f} s = {total:.1f} s  [{db}]")
    print(f"index size on disk: {db.stat().st_size / 1e6:.1f} MB")
    index = WikiIndex.open(db)
    rng = random.Random(args.seed)

    def pick() -> str:
        return corpus.titles(np.array([rng.randrange(n)]))[0]

    queries = sample_queries(index, pick, -(-args.n // 3), rng)
    report(index, queries, target_ms=20)
    # ru_maxrss is in KiB on Linux
    print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    index.close()


def sample_queries(
    index: WikiIndex, pick: Callable[[], str], per_kind: int, rng: random.Random
) -> dict[str, list[str]]:
    """``per_kind`` queries of each kind, from titles drawn by ``pick`` (which may share ``rng``)."""
    queries: dict[str, list[str]] = {"exact": [], "misspelled": [], "free text": []}
    for _ in range(per_kind):
        queries["exact"].append(pick())
        queries["misspelled"].append(misspell(pick(), rng))
        page = None
        while page is None or not page.sentences:
            page = index.get(pick())
        queries["free text"].append(free_text(page.sentences, rng))
    return queries


def report(index: WikiIndex, queries: dict[str, list[str]], target_ms: float) -> None:
    """Time every query through ``WikiEnv.step`` in this thread; print the latency table."""
    env = WikiEnv(index)
    env.reset(Example(id="bench", question="?", answer=""))
    for q in queries["exact"][:20]:  # warm the page cache so the first kind is not penalised
        env.step(Action("search", q))

    lat: dict[str, list[float]] = {}
    hits = 0
    for kind, qs in queries.items():
        lat[kind] = []
        for q in qs:
            t = time.perf_counter()
            obs, _ = env.step(Action("search", q))
            lat[kind].append((time.perf_counter() - t) * 1000)
            if kind == "exact" and not obs.startswith("Could not find"):
                hits += 1
    lat["overall"] = [x for k in queries for x in lat[k]]

    print(f"\n{'kind':<12}{'n':>6}{'p50 ms':>9}{'p95 ms':>9}{'mean ms':>9}{'max ms':>9}")
    for kind, xs in lat.items():
        print(
            f"{kind:<12}{len(xs):>6}{pct(xs, 0.5):>9.3f}{pct(xs, 0.95):>9.3f}"
            f"{statistics.fmean(xs):>9.3f}{max(xs):>9.3f}"
        )
    print(f"\nexact-title hit rate: {hits}/{len(queries['exact'])} = {hits / len(queries['exact']):.1%}")
    verdict = "met" if pct(lat["overall"], 0.5) <= target_ms else "MISSED"
    print(f"target p50 <= {target_ms:g} ms overall: {verdict}")


if __name__ == "__main__":
    main()
