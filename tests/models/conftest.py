"""Shared settings for the model tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_intra_op_thread() -> Iterator[None]:
    # On a small shared CI machine, several intra-op threads per process oversubscribe the cores and make
    # these small matrix products 5-10x slower; one thread is fastest and the results are the same.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
