"""`deit models`: every registered configuration, with its size and official accuracy."""

from __future__ import annotations

import json

import pytest
import torch

from deit import create_model
from deit.cli import main
from deit.models.registry import list_models

# The official release (docs/reference.md, "Models"): name -> (embed dim, heads, parameters, ImageNet top-1).
OFFICIAL = {
    "deit_tiny_patch16_224": (192, 3, 5_717_416, 72.2),
    "deit_small_patch16_224": (384, 6, 22_050_664, 79.9),
    "deit_base_patch16_224": (768, 12, 86_567_656, 81.8),
    "deit_base_patch16_384": (768, 12, 86_859_496, 82.9),
    "deit_tiny_distilled_patch16_224": (192, 3, 5_910_800, 74.5),
    "deit_small_distilled_patch16_224": (384, 6, 22_436_432, 81.2),
    "deit_base_distilled_patch16_224": (768, 12, 87_338_192, 83.4),
    "deit_base_distilled_patch16_384": (768, 12, 87_630_032, 85.2),
}


def test_json_matches_the_official_release(capsys: pytest.CaptureFixture) -> None:
    assert main(["models", "--json"]) == 0
    records = {record["name"]: record for record in json.loads(capsys.readouterr().out)}
    assert set(OFFICIAL) <= set(records)
    for name, (dim, heads, params, top1) in OFFICIAL.items():
        record = records[name]
        assert (record["embed_dim"], record["num_heads"], record["params"], record["top1"]) == (
            dim,
            heads,
            params,
            top1,
        ), name
        assert record["depth"] == 12 and record["resolution"] == int(name[-3:]), name


def _side(img_size: int | tuple[int, int]) -> int:
    return img_size if isinstance(img_size, int) else img_size[0]


def test_json_describes_the_model_actually_built(capsys: pytest.CaptureFixture) -> None:
    assert main(["models", "--json"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert [record["name"] for record in records] == list_models()
    for record in records:
        with torch.device("meta"):  # shapes only: no memory, no init time
            model = create_model(record["name"])
        built = (
            sum(p.numel() for p in model.parameters()),
            model.embed_dim,
            len(model.blocks),
            model.blocks[0].attn.num_heads,
            _side(model.patch_embed.img_size),
            getattr(model, "dist_token", None) is not None,
        )
        described = tuple(
            record[key] for key in ("params", "embed_dim", "depth", "num_heads", "resolution", "distilled")
        )
        assert described == built, record["name"]


def test_table_and_pattern(capsys: pytest.CaptureFixture) -> None:
    assert main(["models"]) == 0
    table = capsys.readouterr().out
    assert all(name in table for name in list_models())
    assert "74.5" in table  # DeiT-Ti distilled, official top-1
    assert "deit_base_patch16_LS = deit3_base_patch16_224" in table  # the official DeiT III names

    assert main(["models", "--pattern", "*distilled*"]) == 0
    rows = capsys.readouterr().out.strip().splitlines()[1:]
    assert [row.split()[0] for row in rows] == list_models("*distilled*")
    assert rows and all(row.split()[3] == "yes" for row in rows)

    assert main(["models", "--pattern", "resnet*"]) == 2
    assert "resnet*" in capsys.readouterr().err
