"""Launcher environments (torchrun, SLURM) and device resolution."""

from __future__ import annotations

import pytest
import torch

from deit.engine.distributed import first_slurm_host, init_distributed, process_device, read_launcher_env
from deit.errors import DeitError


def test_torchrun_environment() -> None:
    env = read_launcher_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "MASTER_ADDR": "n1"})
    assert (env.rank, env.world_size, env.local_rank, env.source) == (3, 4, 1, "torchrun")
    assert env.distributed and not env.is_main


def test_slurm_environment_finds_the_master_node() -> None:
    env = read_launcher_env(
        {"SLURM_PROCID": "5", "SLURM_NTASKS": "8", "SLURM_LOCALID": "1", "SLURM_NODELIST": "gpu[07-08,11],cpu1"}
    )
    assert (env.rank, env.world_size, env.local_rank, env.master_addr) == (5, 8, 1, "gpu07")


def test_a_single_slurm_task_or_no_launcher_is_one_process() -> None:
    assert not read_launcher_env({"SLURM_PROCID": "0", "SLURM_NTASKS": "1"}).distributed
    assert read_launcher_env({}).world_size == 1


@pytest.mark.parametrize("nodelist, first", [("node1", "node1"), ("a[1-3]", "a1"), ("x[003,009]-ib,y2", "x003-ib")])
def test_first_slurm_host(nodelist: str, first: str) -> None:
    assert first_slurm_host(nodelist) == first


def test_devices() -> None:
    assert process_device("cpu", local_rank=3) == torch.device("cpu")
    assert process_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(DeitError, match="CUDA is not available"):
            process_device("cuda")


def test_distributed_flag_without_a_launcher_is_refused() -> None:
    with pytest.raises(DeitError, match="--distributed"):
        init_distributed(read_launcher_env({}), torch.device("cpu"), require=True)
