"""The local Wikipedia: ``corpus.py`` reads page corpora, ``index.py`` builds and searches the SQLite
FTS5 index (exact and normalised title keys, BM25 for "Similar:")."""
