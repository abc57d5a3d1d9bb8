"""Jittor is imported only by ``import_jittor``, only when used, with the CPU settings it needs here."""

from __future__ import annotations

import subprocess
import sys

import pytest


def _run(code: str, env: dict[str, str] | None = None) -> str:
    import os

    base = {k: v for k, v in os.environ.items() if k not in ("nvcc_path", "use_mkl")}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env=base | (env or {})).stdout.strip()


def test_importing_the_jittor_path_does_not_import_jittor():
    code = ("import sys, reactlab.train.jittor.train, reactlab.train.jittor.convert, reactlab.train.jittor.lora, "
            "reactlab.train.jittor.kernels, reactlab.train.jittor.optim; print('jittor' in sys.modules)")
    assert _run(code) == "False"


def test_import_jittor_sets_cpu_defaults_and_keeps_the_users():
    code = ("import os; from reactlab.train.jittor.runtime import import_jittor; jt = import_jittor(); "
            "print(os.environ['nvcc_path'] + '|' + os.environ['use_mkl'] + '|' + str(jt.flags.use_cuda))")
    assert _run(code) == "|0|0"
    assert _run(code.replace("import_jittor();", "import_jittor(); import_jittor();"), {"use_mkl": "0"}) == "|0|0"


def test_a_missing_jittor_names_the_pip_command(monkeypatch):
    from reactlab.train.jittor.runtime import import_jittor

    monkeypatch.setitem(sys.modules, "jittor", None)  # as if not installed
    with pytest.raises(ModuleNotFoundError, match=r"reactlab\[jittor\]"):
        import_jittor()


def test_with_cuda_nvcc_path_is_left_to_jittor():
    from reactlab.train.jittor.runtime import defaults

    assert defaults(False)["nvcc_path"] == "" and defaults(False)["use_mkl"] == "0"
    assert "nvcc_path" not in defaults(True) and defaults(True)["use_mkl"] == "0"
