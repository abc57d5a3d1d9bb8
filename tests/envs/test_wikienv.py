"""WikiEnv reproduces the ReAct paper's observations (see the module docstring for the deliberate
differences)."""

from __future__ import annotations

import doctest

import pytest

from reactlab.envs import wikienv
from reactlab.envs.wikienv import WikiEnv, search_observation
from reactlab.types import Action, Environment

from .conftest import DERRICKSON, QUESTION


def test_doctests():
    assert doctest.testmod(wikienv).failed == 0


def test_is_an_environment(env):
    _: Environment = env  # the Protocol is structural; this documents the intent
    assert env.reset(QUESTION) == QUESTION.question


def test_search_found_shows_first_five_sentences(env):
    obs, done = env.step(Action("search", "Scott Derrickson"))
    assert obs == " ".join(DERRICKSON[:5]) and not done
    assert env.page_title == "Scott Derrickson"


def test_search_short_page_and_case_insensitive_title(env):
    obs, _ = env.step(Action("search", "ed wood"))
    assert obs == "Edward Davis Wood Jr. was an American filmmaker. He was born in 1924."


def test_search_not_found_lists_similar_titles_as_the_paper(env):
    obs, done = env.step(Action("search", "Foo Barz"))
    assert obs == "Could not find Foo Barz. Similar: ['Foo Bar', 'Foo (band)']." and not done
    assert env.page is None
    assert (
        env.step(Action("search", "Nothing Matches Qqq"))[0]
        == "Could not find Nothing Matches Qqq. Similar: []."
    )


def test_lookup_pages_through_results(env):
    env.step(Action("search", "Scott Derrickson"))
    assert env.step(Action("lookup", "born")) == (f"(Result 1 / 2) {DERRICKSON[0]}", False)
    assert env.step(Action("lookup", "born")) == (f"(Result 2 / 2) {DERRICKSON[5]}", False)
    assert env.step(Action("lookup", "born")) == ("No more results.", False)
    assert env.step(Action("lookup", "born")) == ("No more results.", False)


def test_lookup_new_keyword_resets_and_is_case_insensitive(env):
    env.step(Action("search", "Scott Derrickson"))
    env.step(Action("lookup", "born"))
    assert env.step(Action("lookup", "HORROR"))[0] == f"(Result 1 / 2) {DERRICKSON[2]}"
    assert env.step(Action("lookup", "born"))[0] == f"(Result 1 / 2) {DERRICKSON[0]}"  # back to a fresh list


def test_lookup_sees_the_whole_page_not_only_the_first_five(env):
    env.step(Action("search", "Scott Derrickson"))
    assert env.step(Action("lookup", "often"))[0] == f"(Result 1 / 1) {DERRICKSON[6]}"


def test_lookup_without_page_or_match(env):
    assert env.step(Action("lookup", "born")) == ("No more results.", False)
    env.step(Action("search", "Scott Derrickson"))
    assert env.step(Action("lookup", "zebra")) == ("No more results.", False)


def test_search_resets_lookup_and_a_miss_clears_the_page(env):
    env.step(Action("search", "Scott Derrickson"))
    env.step(Action("lookup", "born"))
    env.step(Action("search", "Ed Wood"))
    assert env.step(Action("lookup", "born"))[0] == "(Result 1 / 1) He was born in 1924."
    env.step(Action("search", "Not A Page Qqq"))
    assert env.step(Action("lookup", "born"))[0] == "No more results."


def test_finish_think_invalid(env):
    assert env.step(Action("think", "hmm")) == ("Nice thought.", False)
    assert env.step(Action("invalid", "I will now search for it")) == (
        "Invalid action: I will now search for it",
        False,
    )
    assert env.step(Action("dance", "x")) == ("Invalid action: Dance[x]", False)
    assert env.step(Action("finish", "yes")) == ("Episode finished.", True)
    assert env.answer == "yes"
    assert env.step(Action("search", "Ed Wood")) == ("Episode finished.", True)  # stays finished
    env.reset(QUESTION)
    assert env.answer is None and env.page is None


def test_invalid_action_is_bounded(env):
    obs, _ = env.step(Action("invalid", "x" * 1000))
    assert obs == "Invalid action: " + "x" * 200 + "..."


@pytest.mark.parametrize(
    "search, lookup, finish",
    [("Search", "Lookup", "Finish"), ("SEARCH", "LOOKUP", "FINISH"), ("sEaRcH", "lOoKuP", "fInIsH")],
)
def test_action_names_in_any_case(env, search, lookup, finish):
    assert env.step(Action(search, "Ed Wood"))[0].startswith("Edward Davis Wood Jr.")
    assert env.step(Action(lookup, "born"))[0] == "(Result 1 / 1) He was born in 1924."
    assert env.step(Action("THINK", "x")) == ("Nice thought.", False)
    assert env.step(Action(finish, "x")) == ("Episode finished.", True)


def test_observations_have_no_newlines_and_are_capped(tiny_index):
    env = WikiEnv(tiny_index, max_obs_chars=40)
    env.reset(QUESTION)
    obs, _ = env.step(Action("search", "Foo\nBarz"))
    assert obs == "Could not find Foo Barz. Similar: ['Foo "[:40] and len(obs) == 40
    obs, _ = env.step(Action("invalid", "a\nb\r\nc"))
    assert "\n" not in obs and "\r" not in obs


def test_search_observation_matches_a_fresh_env(tiny_index, env):
    for q in ["Scott Derrickson", "Foo Barz", ""]:
        assert search_observation(tiny_index, q) == WikiEnv(tiny_index).step(Action("search", q))[0]
    assert (
        search_observation(tiny_index, "Foo Barz")
        == "Could not find Foo Barz. Similar: ['Foo Bar', 'Foo (band)']."
    )


def test_vendored_index_search(vendored_index):
    env = WikiEnv(vendored_index)
    env.reset(QUESTION)
    obs, done = env.step(Action("search", "Scott Derrickson"))
    page = vendored_index.get("Scott Derrickson")
    assert obs == " ".join(page.sentences[:5]) and not done
    assert obs.startswith("Scott Derrickson (born July 16, 1966) is an American director")
    obs, _ = env.step(Action("lookup", "born"))
    assert obs.startswith("(Result 1 / ")
    obs, _ = env.step(Action("search", "Scott Derricksn"))
    assert obs.startswith("Could not find Scott Derricksn. Similar: ['") and obs.endswith("'].")


def test_failed_search_keeps_the_current_page_as_the_paper(env):
    env.step(Action("search", "Scott Derrickson"))
    first, _ = env.step(Action("lookup", "film"))
    obs, _ = env.step(Action("search", "Foo Barz"))
    assert obs.startswith("Could not find Foo Barz.")
    assert env.page_title == "Scott Derrickson"
    nxt, _ = env.step(Action("lookup", "film"))  # the lookup list carries on where it was
    assert first.startswith("(Result 1 / ") and nxt.startswith("(Result 2 / ")
