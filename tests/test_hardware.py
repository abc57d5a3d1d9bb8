"""CPU facts from /proc/cpuinfo text (the machine's own and hand-written ones)."""

from __future__ import annotations

from reactlab import hardware

XEON_AMX = ("processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Processor\n"
            "flags\t\t: fpu avx2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8\n")
EPYC = "processor\t: 0\nmodel name\t: AMD EPYC 7B13 64-Core Processor\nflags\t\t: fpu sse4_2 avx avx2 fma\n"


def test_amx_is_detected_from_cpuinfo():
    assert hardware.has_amx(hardware.cpu_flags(XEON_AMX))
    assert not hardware.has_amx(hardware.cpu_flags(EPYC))
    assert hardware.cpu_flags("no flags line here") == set()


def test_the_cpu_is_named_with_the_flags_that_change_our_kernels():
    assert hardware.cpu_name(EPYC) == "AMD EPYC 7B13 64-Core Processor"
    line = hardware.describe_cpu(XEON_AMX)
    assert line.startswith("Intel(R) Xeon(R) Processor; ")
    assert "avx512f, avx512_bf16, amx_tile, amx_int8, amx_bf16" in line and "load avg" in line
    assert hardware.describe_cpu(EPYC).split("; ")[2] == "avx2"
    assert "no AVX2/AVX-512/AMX" in hardware.describe_cpu("processor\t: 0\n")


def test_this_machine_has_a_name():
    assert hardware.cpu_name().strip()
