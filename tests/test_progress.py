"""Progress bars: shown on a terminal or when asked, never in a pipe, and they pass every item on."""

from __future__ import annotations

from reactlab.progress import PROGRESS_ENV, progress
from reactlab.wiki.corpus import Page
from reactlab.wiki.index import build_index


def test_a_bar_when_asked_and_none_when_not(monkeypatch, capsys):
    monkeypatch.setenv(PROGRESS_ENV, "1")
    assert list(progress(range(5), desc="counting", unit="row")) == [0, 1, 2, 3, 4]
    err = capsys.readouterr().err
    assert "counting" in err and "/5 " in err  # the bar, with its total
    monkeypatch.setenv(PROGRESS_ENV, "0")
    assert list(progress(iter("abc"), desc="quiet")) == ["a", "b", "c"]
    assert capsys.readouterr().err == ""


def test_no_bar_in_a_pipe_by_default(monkeypatch, capsys):
    monkeypatch.delenv(PROGRESS_ENV, raising=False)  # pytest's captured stderr is no terminal
    assert list(progress([1, 2], desc="hidden")) == [1, 2]
    assert capsys.readouterr().err == ""


def test_the_index_build_shows_its_pages(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv(PROGRESS_ENV, "1")
    pages = [Page(title=f"Page {i}", sentences=[f"Sentence {i}."]) for i in range(3)]
    build_index(pages, tmp_path / "w.sqlite")
    assert "indexing pages" in capsys.readouterr().err
