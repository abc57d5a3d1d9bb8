"""A few checks against the real vendored corpus (built once per session into a temp REACTLAB_HOME)."""

from __future__ import annotations


def test_vendored_stats(vendored_index):
    s = vendored_index.stats()
    assert s["pages"] == 50_820
    assert set(s["sources"]) == {"hotpotqa", "hotpotqa-abstracts", "wikipedia-vital"}
    assert s["sentences"] > s["pages"]


def test_vendored_lookups(vendored_index):
    page = vendored_index.get("scott derrickson")
    assert page.title == "Scott Derrickson"
    assert page.sentences[0].startswith("Scott Derrickson (born July 16, 1966) is an American director")
    assert all(s == s.strip() for s in page.sentences)  # HotpotQA's leading spaces are gone
    assert vendored_index.similar("Scott Derrickson")[0] == "Scott Derrickson"
    assert "Ed Wood" in vendored_index.similar("Ed Wood filmmaker")
