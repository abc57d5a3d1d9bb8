"""Environment facts of a question come from the local wiki index, with no network."""

from __future__ import annotations

import socket

import pytest

from reactlab.budget.env import ENV_FEATURES, EnvFeatures, best_bm25, entities


def test_env_features_from_the_local_index_without_network(vendored_index, monkeypatch):
    def no_network(*a, **k):
        raise AssertionError("network used")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    env = EnvFeatures(vendored_index)
    known = env("Were Scott Derrickson and Ed Wood of the same nationality?")
    assert tuple(known) == ENV_FEATURES
    assert known["env_entities"] == 2.0 and known["env_pages"] == 2.0 and known["env_main_page"] == 1.0
    assert known["env_bm25"] > 0 and known["env_bm25_main"] > 0
    unknown = env("Who wrote Zqxjv Wplmk?")
    assert unknown["env_main_page"] == 0.0 and unknown["env_pages"] == 0.0 and unknown["env_bm25_main"] == 0.0
    assert env("what is it?") == {k: 0.0 for k in ENV_FEATURES} | {"env_bm25": env("what is it?")["env_bm25"]}


def test_best_bm25_ranks_a_title_match_above_a_stray_word(vendored_index):
    assert best_bm25(vendored_index, "Scott Derrickson") > best_bm25(vendored_index, "derrickson nationality xyz") > 0
    assert best_bm25(vendored_index, "?!") == 0.0


@pytest.mark.parametrize(("question", "spans"), [
    ("Who is older, Ed Wood or Tim Burton?", ["Ed Wood", "Tim Burton"]),
    ("What year did the band form?", []),
])
def test_entities_are_the_capitalised_spans(question, spans):
    assert entities(question) == spans
