"""Queries are data, never FTS5 syntax: no text a model can produce makes search raise."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reactlab.envs.wikienv import WikiEnv
from reactlab.types import Action

from .conftest import QUESTION

HOSTILE = [
    '"',
    '""',
    '"""',
    "*",
    "a*",
    "NEAR(a b)",
    "NEAR(",
    "a OR",
    "OR",
    "AND",
    "NOT",
    "a AND NOT b",
    "-x",
    "^",
    "^foo",
    "title:foo",
    "text:foo",
    "{title text}: foo",
    "(",
    ")",
    "(a",
    "a)",
    "+",
    ":",
    "'",
    "\x00",
    "a\x00b",
    "\x01\x1f\x7f",
    "\ud800",
    "a\udfffb",
    "\u200b",
    "\ufeff",
    "Foo\nBar",
    "x" * (1 << 20),
    "word " * 100_000,
    "é" * 10_000,
    "🙂",
    "Foo Bar" + "\x00" * 10,
]


def check(env, q):
    obs, done = env.step(Action("search", q))
    assert isinstance(obs, str) and not done and "\n" not in obs and len(obs) <= env.max_obs_chars
    return obs


@pytest.mark.parametrize("q", HOSTILE, ids=lambda q: repr(q[:20]))
def test_hostile_search_never_raises(tiny_index, q):
    env = WikiEnv(tiny_index)
    env.reset(QUESTION)
    check(env, q)
    assert isinstance(env.step(Action("lookup", q))[0], str)
    assert tiny_index.similar(q, k=3) == tiny_index.similar(q, k=3)


def test_query_with_operators_still_matches_its_words(tiny_index):
    assert tiny_index.similar('"Foo" AND NOT ^Bar*')[0] == "Foo Bar"
    assert tiny_index.similar("title:foo")[:2] == ["Foo Bar", "Foo (band)"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(q=st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=200))
def test_any_text_searches(tiny_index, q):
    env = WikiEnv(tiny_index)
    env.reset(QUESTION)
    check(env, q)


@settings(max_examples=100, deadline=None)
@given(
    words=st.lists(
        st.sampled_from(
            [
                '"',
                "*",
                "NEAR",
                "AND",
                "OR",
                "NOT",
                "-",
                "^",
                ":",
                "(",
                ")",
                "foo",
                "title",
                "\x00",
                "bar",
                "{",
                "}",
                "+",
            ]
        ),
        max_size=30,
    )
)
def test_fts_operator_soup(vendored_index, words):
    env = WikiEnv(vendored_index)
    check(env, " ".join(words))
    check(env, "".join(words))
