"""`deit models`: every registered configuration, with its size and official accuracy."""

from __future__ import annotations

import json

import pytest

from deit.cli import main
from deit.models.registry import get_model_spec, list_models


def test_json_lists_every_registered_model_with_its_facts(capsys: pytest.CaptureFixture) -> None:
    assert main(["models", "--json"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert [record["name"] for record in records] == list_models()
    for record in records:
        spec = get_model_spec(record["name"])
        assert (record["params"], record["top1"], record["resolution"]) == (spec.params, spec.top1, spec.img_size)
        assert record["distilled"] == ("distilled" in record["name"])
        assert str(record["resolution"]) in record["name"]


def test_table_and_pattern(capsys: pytest.CaptureFixture) -> None:
    assert main(["models"]) == 0
    table = capsys.readouterr().out
    assert all(name in table for name in list_models())
    assert "74.5" in table  # DeiT-Ti distilled, official top-1

    assert main(["models", "--pattern", "*distilled*"]) == 0
    rows = capsys.readouterr().out.strip().splitlines()[1:]
    assert [row.split()[0] for row in rows] == list_models("*distilled*")
    assert rows and all(row.split()[3] == "yes" for row in rows)

    assert main(["models", "--pattern", "resnet*"]) == 2
    assert "resnet*" in capsys.readouterr().err
