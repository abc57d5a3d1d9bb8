"""Benchmark the offline Wikipedia: index build time and ``search[...]`` latency through WikiEnv.

    .venv/bin/python bench/wiki_search.py [--n 1000] [--home DIR] [--seed 0]

Builds the vendored corpus's index into a fresh temp dir (or ``--home``), then times ``--n``
``WikiEnv.step(search[...])`` calls, split evenly over three kinds of query sampled with a fixed
seed: exact titles, misspelled titles (one random character edit) and free text (5-8 consecutive
words of a page's sentence). Prints build time, p50/p95/mean latency in ms per kind and overall,
and the hit rate of exact titles. Target: p50 <= 2 ms overall.
"""

from __future__ import annotations

import argparse
import random
import statistics
import string
import tempfile
import time
from pathlib import Path

from reactlab.envs.wikienv import WikiEnv
from reactlab.types import Action, Example
from reactlab.wiki.index import get_index


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1000, help="search calls in total (split over 3 kinds)")
    ap.add_argument("--home", type=Path, default=None, help="cache dir (default: a fresh temp dir)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.home is not None:
        bench(args, args.home)
    else:  # a fresh cache, so the build is timed; removed afterwards (the index is ~50 MB)
        with tempfile.TemporaryDirectory(prefix="reactlab-bench-") as tmp:
            bench(args, Path(tmp))


def bench(args: argparse.Namespace, home: Path) -> None:
    t0 = time.perf_counter()
    index = get_index(home=home)
    build_s = time.perf_counter() - t0
    stats = index.stats()
    print(f"index: {stats['pages']} pages, {stats['sentences']} sentences, {stats['db_bytes'] / 1e6:.1f} MB")
    print(f"build (or open, if --home already held it): {build_s:.2f} s  [{stats['path']}]")

    rng = random.Random(args.seed)
    titles = list(index.titles())
    per_kind = -(-args.n // 3)
    queries: dict[str, list[str]] = {"exact": [], "misspelled": [], "free text": []}
    for _ in range(per_kind):
        queries["exact"].append(rng.choice(titles))
        queries["misspelled"].append(misspell(rng.choice(titles), rng))
        page = None
        while page is None or not page.sentences:
            page = index.get(rng.choice(titles))
        queries["free text"].append(free_text(page.sentences, rng))

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
    print(f"target p50 <= 2 ms overall: {'met' if pct(lat['overall'], 0.5) <= 2 else 'MISSED'}")
    index.close()


if __name__ == "__main__":
    main()
