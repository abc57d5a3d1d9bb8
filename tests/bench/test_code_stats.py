"""bench/code_stats.py: docstring, code and comment lines of a module, and the printed summary."""

import textwrap


def test_counts_docstrings_code_and_comments_apart(load_bench):
    cs = load_bench("code_stats")
    src = textwrap.dedent('''\
        """Module doc,
        two lines."""

        # a comment
        X = """not a docstring,
        but a value"""


        class A:
            """Class doc."""

            def f(self):  # trailing comment: still code
                """Function
                doc."""
                return 1
        ''')
    c = cs.count(src)
    assert (c.lines, c.docstring, c.comment) == (15, 5, 1)
    assert c.code == 5  # X's two lines, class A, def f, return 1


def test_prints_the_summary(load_bench, tmp_path, capsys, monkeypatch):
    cs = load_bench("code_stats")
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "big.py").write_text('"""Doc."""\n' + "x = 1\n" * 9)
    (tmp_path / "pkg" / "small.py").write_text("y = 2\n")
    monkeypatch.setattr("sys.argv", ["code_stats.py", str(tmp_path / "pkg"), "--top", "1", "--limit", "5"])
    cs.main()
    out = capsys.readouterr().out
    assert "modules: 2  lines: 11" in out
    assert "    10  big.py" in out and "small.py" not in out
    assert "modules over 5 lines: 1" in out
    assert "docstring lines / code lines: 0.100" in out
