"""The offline Wikipedia: pages in SQLite, titles looked up exactly (and case- and diacritic-folded,
as Wikipedia's redirects would), everything else through FTS5 with BM25.

Index files are content-addressed (``get_index``): built once per corpus into a temp file, moved into
place, never modified afterwards, so readers open them read-only.
"""

from __future__ import annotations

import hashlib
import html
import json
import os
import re
import sqlite3
import tempfile
import threading
import time
import unicodedata
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from reactlab.progress import progress
from reactlab.wiki.corpus import Page, read_corpus

INDEX_VERSION = 1
"""Bump when the schema or the way pages are stored changes: every cached index is then rebuilt."""

TITLE_WEIGHT = 10.0
"""BM25 weight of the title column relative to the text column (1.0)."""

MAX_QUERY_CHARS = 1000
"""Only this many leading characters of a query are considered (titles are far shorter)."""

MAX_QUERY_TERMS = 32
"""At most this many distinct words go into one MATCH expression; it bounds the cost of a query."""

POSTINGS_BUDGET = 3000
"""Similar-title queries drop their commonest words once the kept words' document counts exceed this."""

BUILD_BATCH = 20_000
"""Pages per batch of inserts while building: the build holds one batch of rows in memory at a time."""

_BUILD_FTS_HASH_BYTES = 32 << 20  # FTS5's in-memory postings buffer while building (see build_index)
_TERMS_MIN_DF = 50  # the terms table stores df only from here up; rarer terms count as free
_CORPUS_SUFFIXES = (".jsonl", ".jsonl.gz", ".jsonl.bz2")
_WORD = re.compile(r"[^\W_]+")  # unicode letters/digits; unicode61 treats "_" as a separator too
_SURROGATE = re.compile(r"[\ud800-\udfff]")

_SCHEMA = f"""
CREATE TABLE pages (
    id INTEGER PRIMARY KEY,
    title TEXT NOT NULL UNIQUE,
    fold TEXT NOT NULL,
    norm TEXT NOT NULL,
    sentences TEXT NOT NULL,
    source TEXT NOT NULL
);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
-- Document frequency of the commoner FTS terms, to keep queries cheap (see WikiIndex.similar).
CREATE TABLE terms (term TEXT PRIMARY KEY, df INTEGER NOT NULL) WITHOUT ROWID;
CREATE VIRTUAL TABLE fts USING fts5(
    title, text, content='', tokenize='unicode61 remove_diacritics 2'
);
-- Make "ORDER BY rank" mean title-weighted BM25, so FTS5 can use its top-k fast path.
INSERT INTO fts(fts, rank) VALUES ('rank', 'bm25({TITLE_WEIGHT}, 1.0)');
"""
# Indexes are created after the bulk insert: building a B-tree once is faster than maintaining it.
_INDEXES = """
CREATE INDEX pages_fold ON pages(fold);
CREATE INDEX pages_norm ON pages(norm);
"""


def normalize_title(s: str) -> str:
    """A loose key for titles: case-folded, diacritics stripped, punctuation dropped, spaces collapsed.

    HTML entities are decoded first (HotpotQA keeps titles such as ``Julie &amp; Julia``).
    Apostrophes vanish (``O'Brien`` = ``OBrien``); other punctuation and symbols become spaces
    (``Spider-Man`` = ``Spider Man``).

    >>> normalize_title("  Scott   derrickson ")
    'scott derrickson'
    >>> normalize_title("Beyoncé")
    'beyonce'
    >>> normalize_title("Spider-Man: Homecoming (film)")
    'spider man homecoming film'
    >>> normalize_title("Julie &amp; Julia") == normalize_title("Julie & Julia")
    True
    >>> normalize_title("?!")
    ''
    """
    s = unicodedata.normalize("NFKD", html.unescape(s).casefold())
    out = []
    for ch in s:
        cat = unicodedata.category(ch)
        if cat == "Mn":  # combining marks: the diacritics NFKD split off
            continue
        if ch in "'\u2019\u02bc":
            continue
        out.append(" " if cat[0] in "PSZC" else ch)
    return " ".join("".join(out).split())


def query_terms(query: str) -> list[str]:
    """The distinct words of a query, in order, as FTS5-safe strings (at most :data:`MAX_QUERY_TERMS`).

    Only the first :data:`MAX_QUERY_CHARS` characters are read and each word is cut to 64 characters,
    so a 1 MB string costs no more than a short one.

    >>> query_terms('NEAR(a b) OR "x*" a')
    ['near', 'a', 'b', 'or', 'x']
    """
    terms: list[str] = []
    for word in _WORD.findall(query[:MAX_QUERY_CHARS].casefold()):
        word = word[:64]
        if word not in terms:
            terms.append(word)
            if len(terms) == MAX_QUERY_TERMS:
                break
    return terms


def match_expression(terms: Iterable[str]) -> str:
    """An FTS5 MATCH expression that ORs ``terms`` (from :func:`query_terms`), each quoted.

    The query is data, never FTS syntax: operators, quotes, ``*``, ``^``, ``-`` and column filters
    were separators to :func:`query_terms`, and a word has no ``"`` in it, so quoting it yields a plain
    FTS5 string. Returns ``""`` when there are no terms.

    >>> match_expression(query_terms('NEAR(a b) OR "x*"'))
    '"near" OR "a" OR "b" OR "or" OR "x"'
    >>> match_expression(query_terms("-- ^ *"))
    ''
    """
    return " OR ".join(f'"{w}"' for w in terms)


def _fold(term: str) -> str:
    """Approximate unicode61's ``remove_diacritics`` folding, to look a term up in ``terms``.

    >>> _fold("beyoncé")
    'beyonce'
    """
    return "".join(c for c in unicodedata.normalize("NFD", term) if not unicodedata.combining(c))


def _clean(s: str) -> str:
    """Make a str safe to bind: SQLite's UTF-8 encoder rejects lone surrogates."""
    return _SURROGATE.sub("\ufffd", s)


def build_index(
    pages: Iterable[Page],
    db_path: str | Path,
    meta: dict[str, str] | None = None,
    *,
    batch_size: int = BUILD_BATCH,
) -> Path:
    """Write an index of ``pages`` to ``db_path`` (atomically) and return the path.

    A title seen twice keeps its first page. The file is built next to ``db_path`` under a temp
    name and moved into place with ``os.replace``, so a reader never sees a half-built index and two
    processes building the same index at once both succeed. ``meta`` adds entries to the meta table.
    ``pages`` is streamed: rows go to SQLite ``batch_size`` pages at a time, so memory holds one
    batch plus the set of titles seen (the result does not depend on ``batch_size``).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    db_path = Path(db_path)
    db_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=db_path.name + ".", suffix=".tmp", dir=db_path.parent)
    os.close(fd)
    try:
        con = sqlite3.connect(tmp)
        try:
            # A crash mid-build leaves only a temp file behind: durability would buy nothing here.
            con.execute("PRAGMA journal_mode=OFF")
            con.execute("PRAGMA synchronous=OFF")
            con.execute("PRAGMA page_size=4096")
            con.executescript(_SCHEMA)
            # FTS5 flushes its pending postings to a new segment every 'hashsize' bytes (1 MB by
            # default) and keeps merging segments; 32 MB buffers mean far fewer segments and merges
            # (faster builds: docs/performance.md). A build setting only: removed below.
            con.execute("INSERT INTO fts(fts, rank) VALUES ('hashsize', ?)", (_BUILD_FTS_HASH_BYTES,))
            rows: list[tuple[Any, ...]] = []
            fts_rows: list[tuple[Any, ...]] = []
            seen: set[str] = set()
            for page in progress(pages, desc="indexing pages", unit="page"):
                if page.title in seen:
                    continue
                seen.add(page.title)
                pid = len(seen)
                rows.append(
                    (
                        pid,
                        _clean(page.title),
                        _clean(page.title.casefold()),
                        normalize_title(_clean(page.title)),
                        _clean(json.dumps(page.sentences, ensure_ascii=False)),
                        _clean(page.source),
                    )
                )
                # Search the decoded text ("&amp;" would otherwise be the word "amp"); show it as stored.
                text = _clean(html.unescape(" ".join(page.sentences)))
                fts_rows.append((pid, _clean(html.unescape(page.title)), text))
                if len(rows) >= batch_size:
                    _insert_batch(con, rows, fts_rows)
            _insert_batch(con, rows, fts_rows)
            con.executescript(_INDEXES)
            info = {"index_version": str(INDEX_VERSION), "built_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
            info.update(meta or {})
            con.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", info.items())
            con.execute("INSERT INTO fts(fts) VALUES ('optimize')")  # one b-tree per term: faster reads
            con.execute("DELETE FROM fts_config WHERE k = 'hashsize'")  # the file is as without it
            con.execute("CREATE VIRTUAL TABLE temp.vocab USING fts5vocab(main, 'fts', 'row')")
            con.execute("INSERT INTO terms SELECT term, doc FROM temp.vocab WHERE doc >= ?", (_TERMS_MIN_DF,))
            con.commit()
        finally:
            con.close()
        os.replace(tmp, db_path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return db_path


def _insert_batch(con: sqlite3.Connection, rows: list[tuple[Any, ...]], fts_rows: list[tuple[Any, ...]]) -> None:
    """Insert one batch of ``pages`` and ``fts`` rows (all in the build's one transaction), then
    empty both lists."""
    con.executemany("INSERT INTO pages VALUES (?, ?, ?, ?, ?, ?)", rows)
    con.executemany("INSERT INTO fts(rowid, title, text) VALUES (?, ?, ?)", fts_rows)
    rows.clear()
    fts_rows.clear()


class WikiIndex:
    """Read-only access to an index file built by :func:`build_index`.

    Safe to share across threads of one process (queries are serialised by a lock). Use as a
    context manager or call :meth:`close`.
    """

    def __init__(self, con: sqlite3.Connection, path: Path) -> None:
        self._con = con
        self._lock = threading.Lock()
        self.path = path
        # build_index numbers pages 1..N, so the largest id is the count (one B-tree seek, where
        # COUNT(*) reads every page of the table: a noticeable wait at millions of pages).
        self._n_pages: int = con.execute("SELECT COALESCE(MAX(id), 0) FROM pages").fetchone()[0]

    @classmethod
    def open(cls, db_path: str | Path) -> WikiIndex:
        """Open an existing index read-only; ``FileNotFoundError`` when it does not exist."""
        path = Path(db_path).resolve()
        if not path.is_file():
            raise FileNotFoundError(f"no wiki index at {path} (build one with reactlab.wiki.index.get_index)")
        # immutable=1: index files are never written after the atomic rename, so skip file locking.
        con = sqlite3.connect(f"{path.as_uri()}?mode=ro&immutable=1", uri=True, check_same_thread=False)
        version = con.execute("SELECT value FROM meta WHERE key = 'index_version'").fetchone()
        if version is None or version[0] != str(INDEX_VERSION):
            con.close()
            raise ValueError(
                f"{path}: index version {version and version[0]}, expected {INDEX_VERSION}; rebuild it"
            )
        return cls(con, path)

    def __enter__(self) -> WikiIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._con.close()

    def _query(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._con.execute(sql, params).fetchall()

    def get(self, title: str) -> Page | None:
        """The page titled ``title``: exact title first, then case-insensitive, then normalised key.

        Ties among case-insensitive or normalised matches go to the smallest title in code-point
        order, so the answer never depends on corpus order. ``None`` when nothing matches.
        """
        title = _clean(title).strip()
        if not title or len(title) > MAX_QUERY_CHARS:
            return None
        cols = "title, sentences, source"
        rows = self._query(f"SELECT {cols} FROM pages WHERE title = ?", (title,))
        if not rows:
            rows = self._query(
                f"SELECT {cols} FROM pages WHERE fold = ? ORDER BY title LIMIT 1", (title.casefold(),)
            )
        if not rows:
            norm = normalize_title(title)
            if norm:
                rows = self._query(f"SELECT {cols} FROM pages WHERE norm = ? ORDER BY title LIMIT 1", (norm,))
        if not rows:
            return None
        t, sentences, source = rows[0]
        return Page(t, json.loads(sentences), source)

    def mentions(self, phrase: str) -> bool:
        """Whether some page's title or text holds ``phrase`` as consecutive words (case and
        diacritics ignored, FTS5's tokens): e.g. whether the corpus holds an answer at all."""
        terms = [_fold(w[:64]) for w in _WORD.findall(_clean(phrase)[:MAX_QUERY_CHARS].casefold())][:MAX_QUERY_TERMS]
        if not terms:
            return False
        expr = '"' + " ".join(terms) + '"'
        return bool(self._query("SELECT 1 FROM fts WHERE fts MATCH ? LIMIT 1", (expr,)))

    def similar(self, query: str, k: int = 5) -> list[str]:
        """Up to ``k`` titles ranked by BM25 over title (weighted higher) and text.

        Any string is accepted (it is tokenised, never parsed as FTS syntax); a query with no word
        characters gives ``[]``.
        """
        terms = query_terms(_clean(query))
        if not terms or k <= 0:
            return []
        expr = match_expression(self._affordable(terms))
        rows = self._query(
            "SELECT p.title FROM fts JOIN pages p ON p.id = fts.rowid "
            "WHERE fts MATCH ? ORDER BY rank LIMIT ?",
            (expr, k),
        )
        return [r[0] for r in rows]

    def _affordable(self, terms: list[str]) -> list[str]:
        """The terms worth their cost: the rarest ones, while their document counts sum to at most
        :data:`POSTINGS_BUDGET`; always at least the rarest one.

        FTS5 scores every row that matches any OR-ed term and scans each term's whole doclist to
        count it for the IDF, so a single "the" costs ~40k rows. Common words carry little weight
        (BM25's IDF ~ log(N/df); FTS5 clamps it to ~0 once df >= N/2, so those are dropped for free),
        so dropping them barely moves the ranking but bounds the cost.
        """
        folded = {t: _fold(t) for t in terms}
        keys = tuple(dict.fromkeys(folded.values()))
        marks = ",".join("?" * len(keys))
        df = dict(self._query(f"SELECT term, df FROM terms WHERE term IN ({marks})", keys))
        # Terms absent from the table are rarer than _TERMS_MIN_DF: nearly free.
        cost = {t: df.get(folded[t], 0) for t in terms}
        ranked = sorted(terms, key=cost.__getitem__)  # stable: ties keep query order
        kept, spent = [ranked[0]], cost[ranked[0]]
        for t in ranked[1:]:
            spent += cost[t]
            if spent > POSTINGS_BUDGET or 2 * cost[t] >= self._n_pages:
                break
            kept.append(t)
        return sorted(kept, key=terms.index)

    def titles(self) -> Iterator[str]:
        """All titles, in corpus order (for sampling in benchmarks and tests)."""
        for (t,) in self._query("SELECT title FROM pages ORDER BY id", ()):
            yield t

    def stats(self) -> dict[str, Any]:
        """Counts and provenance: ``pages``, ``sentences``, ``sources`` (count per source),
        ``db_bytes``, ``corpus_hash``, ``index_version``, ``built_at``, ``path``."""
        pages = self._query("SELECT COUNT(*) FROM pages", ())[0][0]
        sentences = self._query("SELECT COALESCE(SUM(json_array_length(sentences)), 0) FROM pages", ())[0][0]
        sources = dict(self._query("SELECT source, COUNT(*) FROM pages GROUP BY source ORDER BY source", ()))
        meta = dict(self._query("SELECT key, value FROM meta", ()))
        return {
            "pages": pages,
            "sentences": sentences,
            "sources": sources,
            "db_bytes": self.path.stat().st_size,
            "corpus_hash": meta.get("corpus_hash", ""),
            "index_version": int(meta.get("index_version", 0)),
            "built_at": meta.get("built_at", ""),
            "path": str(self.path),
        }


def default_corpus() -> Path:
    """The vendored page corpus of the offline data pack."""
    from reactlab import paths

    return paths.data_dir() / "wiki" / "corpus.jsonl.gz"


def _corpus_files(corpora: Iterable[str | Path]) -> list[Path]:
    """Expand directories into their corpus files (sorted, recursive); keep files as given."""
    files: list[Path] = []
    for c in corpora:
        c = Path(c)
        if c.is_dir():
            files += sorted(
                p for p in c.rglob("*") if p.is_file() and p.name.lower().endswith(_CORPUS_SUFFIXES)
            )
        elif c.is_file():
            files.append(c)
        else:
            raise FileNotFoundError(f"wiki corpus not found: {c}")
    return files


def corpus_key(files: Iterable[Path], extra: Iterable[Page] = ()) -> str:
    """sha256 over the corpus files' bytes, the extra pages and :data:`INDEX_VERSION`.

    Each file contributes its length before its bytes so that moving bytes between files changes
    the key. Any change in content changes the key; touching a file (mtime) does not.
    """
    h = hashlib.sha256(f"reactlab-wiki-index:{INDEX_VERSION}\n".encode())
    for f in files:
        h.update(f"file:{f.stat().st_size}\n".encode())
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    for p in extra:
        h.update(json.dumps(["extra", p.title, p.sentences, p.source], ensure_ascii=False).encode())
        h.update(b"\n")
    return h.hexdigest()


def get_index(
    corpora: list[Path] | None = None, extra_pages: Iterable[Page] = (), home: Path | None = None
) -> WikiIndex:
    """Open the cached index of ``corpora`` (default: the vendored corpus), building it if missing.

    The cache file is ``home/wiki/{key}.sqlite`` (``home`` defaults to :func:`reactlab.paths.home`)
    where ``key`` is :func:`corpus_key`, so an index is rebuilt exactly when its content changes.
    Pages of earlier corpora win over later ones on equal titles; ``extra_pages`` (e.g. the contexts
    of a HotpotQA file, see :func:`~reactlab.wiki.corpus.pages_from_contexts`) are added only for
    titles that no corpus has.
    """
    from reactlab import paths

    files = _corpus_files(corpora if corpora is not None else [default_corpus()])
    extra = list(extra_pages)
    key = corpus_key(files, extra)
    db = Path(home if home is not None else paths.home()) / "wiki" / f"{key}.sqlite"
    if not db.is_file():
        cap = paths.cache_cap_bytes()  # a bad $REACTLAB_CACHE_MAX_MB fails before the build

        def pages() -> Iterator[Page]:
            for f in files:
                yield from read_corpus(f)
            yield from extra  # build_index keeps the first page of a title: the corpus text wins

        build_index(pages(), db, meta={"corpus_hash": key, "corpora": json.dumps([str(f) for f in files])})
        paths.evict(keep=db, root=db.parent.parent, cap=cap)
    paths.mark_used(db)
    return WikiIndex.open(db)
