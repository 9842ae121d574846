"""The CPU as benchmark lines should name it: model, family and the vector extensions that decide int8/bf16 speed.

Cloud VMs may hide extensions the silicon has (a family-25 EPYC here reported AVX2 only), and ONNX Runtime's and
oneDNN's int8 kernels are about twice as fast with VNNI as without, so a CPU figure without the flags is
ambiguous.
"""

from __future__ import annotations

import platform
from pathlib import Path

#: Flags (as /proc/cpuinfo spells them) that change which int8/bf16 kernels the libraries can pick.
SPEED_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8", "amx_bf16")


def describe_cpu(cpuinfo: str | None = None) -> str:
    """E.g. 'AMD EPYC (family 25 model 1; avx2, no avx512f/avx512_vnni/...)' from `cpuinfo` or /proc/cpuinfo."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return platform.processor() or platform.machine()
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    name = fields.get("model name") or platform.processor() or platform.machine()
    if "flags" not in fields:
        return name
    flags = set(fields["flags"].split())
    present = [flag for flag in SPEED_FLAGS if flag in flags]
    missing = [flag for flag in SPEED_FLAGS if flag not in flags]
    where = f"family {fields['cpu family']} model {fields.get('model', '?')}; " if "cpu family" in fields else ""
    return f"{name} ({where}{', '.join(present) or 'no AVX2'}" + (f", no {'/'.join(missing)})" if missing else ")")


__all__ = ["SPEED_FLAGS", "describe_cpu"]
