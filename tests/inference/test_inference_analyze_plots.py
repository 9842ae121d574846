"""`deit analyze`'s figures: attention maps with a colour bar, token similarity with whole-number layer ticks."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from matplotlib.figure import Figure

from deit.inference.analyze import _write_attention, _write_similarity


def test_attention_maps_have_a_colour_bar(tmp_path: Path, drawn: list[Figure]) -> None:
    maps = {"cls token": torch.rand(2, 4, 4), "dist token": torch.rand(2, 4, 4)}
    _write_attention(tmp_path, torch.rand(2, 3, 32, 32), maps, ["a", "b"])
    (figure,) = drawn
    assert len(figure.axes) == 2 * 3 + 1  # the grid of images and maps, and one colour bar
    assert figure.axes[-1].get_ylabel() == "attention, each map from its min (0) to max (1)"


@pytest.mark.parametrize("depth", [2, 3, 12])
def test_token_similarity_ticks_are_whole_layers(tmp_path: Path, drawn: list[Figure], depth: int) -> None:
    _write_similarity(tmp_path, 0.06, [0.5] * depth, num_images=4)
    ticks = [tick for tick in drawn[0].axes[0].get_xticks() if 0 <= tick <= depth]
    assert ticks and all(float(tick).is_integer() for tick in ticks)
