"""The launcher's environment (torchrun or SLURM) -> a process group, and the small helpers around it."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.distributed as dist

from deit.errors import DeitError


@dataclass(frozen=True)
class DistributedEnv:
    """Where this process sits: its global rank, the number of processes, its rank on the node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    master_addr: str | None = None
    source: str = "single"

    @property
    def distributed(self) -> bool:
        """Whether more than one process takes part."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that writes files and prints."""
        return self.rank == 0


def first_slurm_host(nodelist: str) -> str:
    """The first host of a SLURM node list (`node[03-05,07],gpu1` -> `node03`), without calling `scontrol`."""
    first = re.split(r",(?![^\[]*\])", nodelist.strip())[0]
    match = re.fullmatch(r"([^\[]+)\[([^\]]+)\](.*)", first)
    if not match:
        return first
    prefix, ranges, suffix = match.groups()
    return prefix + ranges.split(",")[0].split("-")[0] + suffix


def read_launcher_env(environ: Mapping[str, str] | None = None) -> DistributedEnv:
    """torchrun (RANK/WORLD_SIZE/LOCAL_RANK) first, then SLURM (SLURM_PROCID/NTASKS/LOCALID), else one process."""
    env = os.environ if environ is None else environ
    try:
        if "RANK" in env and "WORLD_SIZE" in env:
            return DistributedEnv(
                int(env["RANK"]),
                int(env["WORLD_SIZE"]),
                int(env.get("LOCAL_RANK", 0)),
                env.get("MASTER_ADDR"),
                "torchrun",
            )
        if "SLURM_PROCID" in env and int(env.get("SLURM_NTASKS", "1")) > 1:
            master = env.get("MASTER_ADDR") or (
                first_slurm_host(env["SLURM_NODELIST"]) if env.get("SLURM_NODELIST") else None
            )
            return DistributedEnv(
                int(env["SLURM_PROCID"]), int(env["SLURM_NTASKS"]), int(env.get("SLURM_LOCALID", 0)), master, "slurm"
            )
    except ValueError as error:
        raise DeitError(f"malformed launcher environment variable: {error}") from error
    return DistributedEnv()


def process_device(device: str, local_rank: int = 0) -> torch.device:
    """The device this training process uses: `deit.perf.resolve_device`'s, and for a bare `cuda` the local rank's
    GPU, made current (under a launcher each process drives its own GPU)."""
    from deit.perf import resolve_device

    resolved = resolve_device(device)
    if resolved.type == "cuda":
        if resolved.index is None:
            resolved = torch.device("cuda", local_rank % torch.cuda.device_count())
        torch.cuda.set_device(resolved)
    return resolved


def init_distributed(
    env: DistributedEnv, device: torch.device, *, dist_url: str = "env://", require: bool = False
) -> None:
    """Join the process group (nccl on CUDA, gloo on CPU) when the launcher started several processes."""
    if not env.distributed:
        if require:
            raise DeitError("--distributed: no launcher environment found (start with torchrun or srun)")
        return
    if dist.is_initialized():
        return
    if dist_url == "env://":
        # SLURM does not export these; torchrun does.
        os.environ.setdefault("MASTER_ADDR", env.master_addr or "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", "29500")
        os.environ.setdefault("RANK", str(env.rank))
        os.environ.setdefault("WORLD_SIZE", str(env.world_size))
        os.environ.setdefault("LOCAL_RANK", str(env.local_rank))
    backend = "nccl" if device.type == "cuda" else "gloo"
    kwargs = {"device_id": device} if device.type == "cuda" else {}
    dist.init_process_group(backend=backend, init_method=dist_url, rank=env.rank, world_size=env.world_size, **kwargs)


def shutdown_distributed() -> None:
    """Leave the process group, if joined."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def is_distributed() -> bool:
    """Whether a process group is active."""
    return dist.is_available() and dist.is_initialized()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum `tensor` over processes in place (no-op in a single process)."""
    if is_distributed():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def any_process(flag: bool, device: torch.device) -> bool:
    """True if `flag` is true on any process (used to stop every rank together)."""
    if not is_distributed():
        return flag
    value = torch.tensor(float(flag), device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())
