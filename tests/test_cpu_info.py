"""Benchmark lines name the CPU with its family and the int8/bf16-relevant vector extensions."""

from __future__ import annotations

from deit.cpu_info import describe_cpu

ZEN_AVX2_ONLY = """processor\t: 0
cpu family\t: 25
model\t\t: 1
model name\t: AMD EPYC
flags\t\t: fpu sse2 avx avx2 fma
processor\t: 1
model name\t: AMD EPYC
"""


def test_names_family_and_the_missing_int8_extensions() -> None:
    line = describe_cpu(ZEN_AVX2_ONLY)
    assert line.startswith("AMD EPYC (family 25 model 1; avx2, no avx512f/avx512_vnni/")
    assert "amx_int8" in line.split("no ", 1)[1]


def test_lists_vnni_when_present() -> None:
    line = describe_cpu(ZEN_AVX2_ONLY.replace("fma\n", "fma avx512f avx512_vnni avx512_bf16\n", 1))
    assert "avx2, avx512f, avx512_vnni, avx512_bf16, no avx_vnni/amx_int8/amx_bf16)" in line


def test_without_flags_the_model_name_alone() -> None:
    assert describe_cpu("model name\t: Some CPU\n") == "Some CPU"
