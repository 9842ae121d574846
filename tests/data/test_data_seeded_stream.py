"""The seeded stream: the same batches for 0, 1 and 2 loader workers and from the middle of an epoch."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from deit.engine import builders
from deit.engine.config import make_config
from deit.engine.distributed import DistributedEnv


def _stream(workers: int, **settings):
    """The training loader of a DIGITS run with the paper's per-image augmentation, mixup and erasing."""
    config = make_config(
        data_set="DIGITS",
        input_size=32,
        batch_size=8,
        num_workers=workers,
        device="cpu",
        seeded_stream=True,
        max_steps_per_epoch=3,
        **settings,
    )
    train_set, val_set = builders.build_datasets(config, report_dir=None)
    return builders.build_loaders(config, train_set, val_set, DistributedEnv(), torch.device("cpu")).train


def _epoch(loader, epoch: int, start_step: int = 0) -> list[tuple[torch.Tensor, ...]]:
    loader.set_epoch(epoch, start_step)
    return [tuple(part.clone() for part in batch) for batch in loader]


def _same(first, second) -> bool:
    return len(first) == len(second) and all(
        all(torch.equal(a, b) for a, b in zip(x, y)) for x, y in zip(first, second)
    )


@pytest.fixture(scope="module")
def reference():
    torch.set_num_threads(1)
    return _epoch(_stream(0), epoch=1)


def test_batches_do_not_depend_on_the_number_of_workers(reference) -> None:
    assert len(reference) == 3 and reference[0][0].shape == (8, 3, 32, 32)
    assert reference[0][1].shape == (8, 10)  # mixup's soft targets: mixing happened in the stream
    for workers in (1, 2):
        assert _same(_epoch(_stream(workers), epoch=1), reference)


def test_a_resume_in_the_middle_of_an_epoch_draws_the_rest_of_it(reference) -> None:
    loader = _stream(0)
    _epoch(loader, epoch=0)  # whatever ran before must not matter
    torch.rand(5), random.random(), np.random.rand()
    assert _same(_epoch(loader, epoch=1, start_step=2), reference[2:])


def test_other_epochs_and_seeds_draw_other_batches(reference) -> None:
    assert not torch.equal(_epoch(_stream(0), epoch=2)[0][0], reference[0][0])
    assert not torch.equal(_epoch(_stream(0, seed=1), epoch=1)[0][0], reference[0][0])


def test_the_process_random_streams_are_left_as_they_were() -> None:
    loader = _stream(0)
    torch.manual_seed(3), random.seed(3), np.random.seed(3)
    expected = (torch.rand(3), random.random(), np.random.rand())
    torch.manual_seed(3), random.seed(3), np.random.seed(3)
    _epoch(loader, epoch=0)
    assert torch.equal(torch.rand(3), expected[0])
    assert random.random() == expected[1] and np.random.rand() == expected[2]
