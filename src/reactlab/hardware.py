"""What this CPU is: its name and feature flags, read from ``/proc/cpuinfo`` at run time.

Speed and correctness depend on it (AMX changes which llama.cpp buffers are safe and how fast bf16
matmuls run), so settings are chosen from what is detected here, never assumed, and every bench
names the CPU its figures come from (``describe_cpu()``).
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

AMX_FLAGS = ("amx_tile", "amx_int8", "amx_bf16")
REPORTED_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16")


def _cpuinfo(cpuinfo: str | None) -> str:
    if cpuinfo is not None:
        return cpuinfo
    try:
        return Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return ""


def _field(cpuinfo: str, name: str) -> str | None:
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == name:
            return value.strip()
    return None


def cpu_flags(cpuinfo: str | None = None) -> set[str]:
    """The CPU's feature flags (empty where ``/proc/cpuinfo`` is not there).

    >>> sorted(cpu_flags("processor : 0\\nflags : fpu avx2 amx_int8\\n"))
    ['amx_int8', 'avx2', 'fpu']
    """
    return set((_field(_cpuinfo(cpuinfo), "flags") or "").split())


def has_amx(flags: set[str] | None = None) -> bool:
    """True on a CPU with AMX tiles (Intel Sapphire Rapids and later)."""
    return any(f in (cpu_flags() if flags is None else flags) for f in AMX_FLAGS)


def bf16_matmuls_fast(flags: set[str] | None = None) -> bool:
    """True where the CPU multiplies bf16 matrices natively (AMX bf16 tiles, or AVX-512 BF16 dot
    products), so that LoRA SFT under bf16 autocast beats fp32; a CPU with neither converts bf16 in
    software. Inference stays fp32 everywhere: bf16 moved greedy answers (docs/performance.md).

    >>> bf16_matmuls_fast({"avx2"}), bf16_matmuls_fast({"avx512_bf16"}), bf16_matmuls_fast({"amx_bf16", "amx_tile"})
    (False, True, True)
    """
    flags = cpu_flags() if flags is None else flags
    return "amx_bf16" in flags or "avx512_bf16" in flags


def cpu_name(cpuinfo: str | None = None) -> str:
    """The CPU's model name (``platform.processor()`` where ``/proc/cpuinfo`` has none).

    >>> cpu_name("processor : 0\\nmodel name : AMD EPYC 7B13\\n")
    'AMD EPYC 7B13'
    """
    return _field(_cpuinfo(cpuinfo), "model name") or platform.processor() or "unknown CPU"


def describe_cpu(cpuinfo: str | None = None) -> str:
    """One line for a bench's output: name, cores, the flags that change our kernels, load average
    (a busy machine's figures are not an idle one's)."""
    text = _cpuinfo(cpuinfo)
    flags = cpu_flags(text)
    has = [f for f in REPORTED_FLAGS if f in flags]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{cpu_name(text)}; {os.cpu_count()} cores; {', '.join(has) or 'no AVX2/AVX-512/AMX'}; "
            f"load avg {load:.1f}")
