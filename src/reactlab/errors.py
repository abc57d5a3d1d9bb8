"""How a command reports a user's mistake: one line ``error: ...`` on stderr and exit status 2, no
traceback. Every ``reactlab`` subcommand wraps its library call in ``user_errors()``.

A user's mistake is what the library raises for bad input: ``ValueError`` (``DataError`` and
``ConfigError`` are ValueErrors, with file/line/field in the message), ``KeyError`` (an unknown
name), ``ModuleNotFoundError`` (an optional package not installed, with the pip command) and
``OSError`` (a missing file, a place that cannot be written, a full disk: ``io.OutputError`` names
the file). Anything else is a bug and keeps its traceback. ``reactlab --debug ...`` (or
``REACTLAB_DEBUG=1``) shows the traceback of a user's mistake too.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import NoReturn

USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError, KeyError, ModuleNotFoundError)


def message(err: BaseException) -> str:
    """The one-line text of an error (a ``KeyError``'s message without the quotes ``str`` adds).

    >>> message(KeyError("unknown model 'x'")), message(ValueError("bad"))
    ("unknown model 'x'", 'bad')
    """
    if isinstance(err, KeyError) and len(err.args) == 1 and isinstance(err.args[0], str):
        return err.args[0]
    return str(err)


def fail(msg: str) -> NoReturn:
    """Print ``error: msg`` in red on stderr and exit with status 2."""
    import typer

    typer.secho(f"error: {msg}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


DEBUG_ENV = "REACTLAB_DEBUG"


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn a user's mistake raised inside the block into ``fail`` (see the module doc)."""
    try:
        yield
    except USER_ERRORS as e:
        if os.environ.get(DEBUG_ENV, "") not in ("", "0"):
            raise
        fail(message(e))
