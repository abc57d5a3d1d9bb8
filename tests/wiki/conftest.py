"""Fixtures for the wiki tests: small corpora written in tmp dirs, and the real vendored index built
once per session into a temporary REACTLAB_HOME (shared with tests/envs through the content-addressed
cache, so it is built only once)."""

from __future__ import annotations

import pytest

from reactlab.wiki.corpus import Page
from reactlab.wiki.index import WikiIndex, build_index

SMALL_PAGES = [
    Page(
        "Scott Derrickson",
        [
            "Scott Derrickson (born July 16, 1966) is an American director, screenwriter and producer.",
            "He lives in Los Angeles, California.",
            "He is best known for directing horror films such as Sinister.",
        ],
        "test",
    ),
    Page("Ed Wood", ["Edward Davis Wood Jr. was an American filmmaker, actor, and author."], "test"),
    Page("Ed Wood (film)", ["Ed Wood is a 1994 American biographical period comedy-drama film."], "test"),
    Page("Beyoncé", ["Beyoncé Giselle Knowles-Carter is an American singer."], "test"),
    Page("Julie &amp; Julia", ["Julie & Julia is a 2009 American comedy-drama film."], "test"),
    Page(
        "Sinister (film)",
        ["Sinister is a 2012 supernatural horror film directed by Scott Derrickson."],
        "test",
    ),
    Page("IT", ["IT is an abbreviation."], "test"),
    Page("It", ["It is a pronoun."], "test"),
]


@pytest.fixture
def small_index(tmp_path):
    with WikiIndex.open(build_index(SMALL_PAGES, tmp_path / "small.sqlite")) as index:
        yield index
