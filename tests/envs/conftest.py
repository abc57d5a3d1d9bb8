"""Fixtures for the env tests: a tiny index with known pages, and the real vendored index built once
per session into a temporary REACTLAB_HOME (the wiki tests share it through the cache)."""

from __future__ import annotations

import pytest

from reactlab.envs.wikienv import WikiEnv
from reactlab.types import Example
from reactlab.wiki.corpus import Page
from reactlab.wiki.index import WikiIndex, build_index

DERRICKSON = [
    "Scott Derrickson (born July 16, 1966) is an American director, screenwriter and producer.",
    "He lives in Los Angeles, California.",
    "He is best known for directing horror films such as Sinister, The Exorcism of Emily Rose, and Deliver Us From Evil.",
    "He directed the 2016 Marvel film Doctor Strange.",
    "Derrickson grew up in Denver, Colorado.",
    "He was born to a Christian family.",
    "His films were often horror films.",
]
PAGES = [
    Page("Scott Derrickson", DERRICKSON, "test"),
    Page("Ed Wood", ["Edward Davis Wood Jr. was an American filmmaker.", "He was born in 1924."], "test"),
    Page("Foo Bar", ["Foo Bar is a placeholder."], "test"),
    Page(
        "Foo (band)", ["Foo was a rock band from the town of Springfield, in the state of Nowhere."], "test"
    ),
]
QUESTION = Example(
    id="q1", question="Were Scott Derrickson and Ed Wood of the same nationality?", answer="yes"
)


@pytest.fixture(scope="session")
def tiny_index(tmp_path_factory):
    path = build_index(PAGES, tmp_path_factory.mktemp("tiny") / "tiny.sqlite")
    with WikiIndex.open(path) as index:
        yield index


@pytest.fixture
def env(tiny_index):
    e = WikiEnv(tiny_index)
    e.reset(QUESTION)
    return e
