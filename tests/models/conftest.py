"""Shared settings for the model tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

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


class MarkerPayload:
    """Unpickling this creates `marker` (the classic malicious checkpoint); weights_only loading must refuse it."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return open, (self.marker, "w")


@pytest.fixture
def hostile_payload(tmp_path_factory: pytest.TempPathFactory) -> Callable[[Path], MarkerPayload]:
    """A factory of pickle payloads that would create a given file; each is first shown to be live."""
    import pickle

    def make(marker: Path) -> MarkerPayload:
        proof = tmp_path_factory.mktemp("proof") / "created_by_unpickling"
        pickle.loads(pickle.dumps(MarkerPayload(str(proof))))
        assert proof.exists(), "the payload must really run when unpickled, or the safety tests prove nothing"
        return MarkerPayload(str(marker))

    return make
