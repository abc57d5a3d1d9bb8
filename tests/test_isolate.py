"""run_isolated: results come back, exceptions and native crashes become errors here, and a crash
inside a test fails that one test while the rest of the run goes on."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from reactlab.isolate import ChildCrashed, ChildFailed, run_isolated


def test_result_comes_back():
    assert run_isolated(divmod, 17, 5) == (3, 2)


def test_exception_in_child_is_raised_with_its_traceback():
    with pytest.raises(ChildFailed, match=r"divmod failed in its child process: ZeroDivisionError") as err:
        run_isolated(divmod, 1, 0)
    assert "Traceback" in str(err.value)


def test_a_crash_is_an_error_naming_the_signal():
    with pytest.raises(ChildCrashed, match=r"abort died in its child process: killed by signal SIGABRT") as err:
        run_isolated(os.abort)
    assert err.value.exitcode == -6


def test_a_hang_is_killed_at_the_timeout():
    import time

    with pytest.raises(ChildCrashed, match=r"sleep ran past 1 s in its child process; killed it"):
        run_isolated(time.sleep, 60, timeout=1)


def test_a_crash_inside_a_test_fails_that_test_only(tmp_path):
    """The point of the module: a pytest run in which one test's child aborts reports that test as
    failed, with the signal named, and still runs and passes the others."""
    (tmp_path / "test_probe.py").write_text(textwrap.dedent("""
        import os
        from reactlab.isolate import run_isolated

        def test_crashes():
            run_isolated(os.abort)

        def test_after_the_crash():
            assert run_isolated(max, 2, 3) == 3
    """))
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--no-header", str(tmp_path)],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "1 failed, 1 passed" in out, out
    assert "killed by signal SIGABRT" in out, out
    assert "Fatal Python error" not in out, out
