"""Size of the package's code: the five largest modules, how many exceed a line limit, and how many
lines are docstrings for each line of code.

    .venv/bin/python bench/code_stats.py [ROOT] [--top 5] [--limit 400]

ROOT defaults to ``src/reactlab``. A docstring line is a line of a module, class or function
docstring (``ast``); a code line is a line holding any token other than a comment, a docstring or
whitespace (``tokenize``); comment-only and blank lines are counted apart. To measure another
commit: ``git archive COMMIT src/reactlab | tar -x -C DIR`` and pass ``DIR/src/reactlab``.
"""

from __future__ import annotations

import argparse
import ast
import io
import tokenize
from pathlib import Path
from typing import NamedTuple

_LAYOUT = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
           tokenize.ENCODING, tokenize.ENDMARKER}


class Counts(NamedTuple):
    lines: int
    code: int
    docstring: int
    comment: int


def docstring_lines(tree: ast.Module) -> set[int]:
    """The line numbers spanned by the module's, its classes' and its functions' docstrings."""
    out: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
                    and isinstance(first.value.value, str)):
                out.update(range(first.lineno, (first.end_lineno or first.lineno) + 1))
    return out


def count(source: str) -> Counts:
    """Lines of one module by kind; a line is code if a non-docstring token touches it."""
    docs = docstring_lines(ast.parse(source))
    code: set[int] = set()
    comments: set[int] = set()
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            comments.add(tok.start[0])
        elif tok.type not in _LAYOUT:
            code.update(range(tok.start[0], tok.end[0] + 1))
    code -= docs
    return Counts(lines=len(source.splitlines()), code=len(code), docstring=len(docs),
                  comment=len(comments - code - docs))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", nargs="?", default="src/reactlab", type=Path)
    ap.add_argument("--top", type=int, default=5, help="how many of the largest modules to list")
    ap.add_argument("--limit", type=int, default=400, help="count the modules longer than this many lines")
    args = ap.parse_args()
    stats = {p.relative_to(args.root).as_posix(): count(p.read_text(encoding="utf-8"))
             for p in sorted(args.root.rglob("*.py"))}
    if not stats:
        raise SystemExit(f"error: no .py files under {args.root}")
    print(f"modules: {len(stats)}  lines: {sum(c.lines for c in stats.values())}")
    print(f"largest {args.top} modules (lines):")
    for name, c in sorted(stats.items(), key=lambda kv: -kv[1].lines)[:args.top]:
        print(f"  {c.lines:6d}  {name}")
    over = [n for n, c in stats.items() if c.lines > args.limit]
    print(f"modules over {args.limit} lines: {len(over)}")
    code = sum(c.code for c in stats.values())
    doc = sum(c.docstring for c in stats.values())
    comment = sum(c.comment for c in stats.values())
    print(f"code lines: {code}  docstring lines: {doc}  comment-only lines: {comment}")
    print(f"docstring lines / code lines: {doc / code:.3f}")


if __name__ == "__main__":
    main()
