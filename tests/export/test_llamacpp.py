"""llama.cpp settings per CPU (no llama.cpp needed), and the model parameters actually reaching it."""

from __future__ import annotations

import importlib.util

import pytest

from reactlab.export import llamacpp
from reactlab.hardware import cpu_flags, has_amx

XEON_AMX = "processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8\n"
EPYC = "processor\t: 0\nflags\t\t: fpu sse4_2 avx avx2 fma\n"


def test_extra_buffer_types_are_off_on_amx_only(monkeypatch):
    monkeypatch.delenv(llamacpp.ENV_EXTRA_BUFTS, raising=False)
    assert llamacpp.use_extra_bufts(cpu_flags(XEON_AMX)) is False
    assert llamacpp.use_extra_bufts(cpu_flags(EPYC)) is True
    monkeypatch.setenv(llamacpp.ENV_EXTRA_BUFTS, "0")
    assert llamacpp.use_extra_bufts(cpu_flags(EPYC)) is False
    monkeypatch.setenv(llamacpp.ENV_EXTRA_BUFTS, "1")
    assert llamacpp.use_extra_bufts(cpu_flags(XEON_AMX)) is True


def test_this_cpu_gets_the_setting_its_flags_call_for(monkeypatch):
    monkeypatch.delenv(llamacpp.ENV_EXTRA_BUFTS, raising=False)
    assert llamacpp.model_defaults() == {"use_extra_bufts": not has_amx()}


@pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None, reason="llama-cpp-python not installed")
def test_the_setting_reaches_llama_cpp_model_params(monkeypatch):
    """``Llama`` has no argument for it: the defaults it starts from carry it while a model loads,
    and are llama.cpp's own again afterwards."""
    import llama_cpp.llama_cpp as lib

    before = lib.llama_model_default_params().use_extra_bufts
    with llamacpp._patched_model_params(use_extra_bufts=not before):
        assert lib.llama_model_default_params().use_extra_bufts is (not before)
    assert lib.llama_model_default_params().use_extra_bufts is before
