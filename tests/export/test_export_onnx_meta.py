"""An ONNX file's deit metadata is checked against its own graph before any image runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from deit.cli import main
from deit.errors import DeitError
from deit.export.onnx_meta import read_onnx_meta
from deit.export.onnx_runtime import OnnxRuntimeModel
from deit.models.meta import CheckpointMeta
from tiny_checkpoints import write_image

_META = CheckpointMeta(model="deit_tiny_patch16_224", num_classes=3, input_size=32, class_names=("a", "b", "c"))


def _graph_file(path: Path, *, size: int = 32, output: str = "linear", meta: dict | None = None) -> Path:
    """A tiny classifier graph (flatten, matrix product) or, with output="rank3", a (batch, 3, size²) one."""
    images = helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, size, size])
    if output == "rank3":
        shape = numpy_helper.from_array(np.array([0, 3, size * size], dtype=np.int64), "shape")
        nodes = [helper.make_node("Reshape", ["images", "shape"], ["logits"])]
        logits = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3, size * size])
        initializers = [shape]
    else:
        weight = numpy_helper.from_array(np.full((3 * size * size, 3), 1e-3, dtype=np.float32), "weight")
        nodes = [
            helper.make_node("Flatten", ["images"], ["flat"]),
            helper.make_node("MatMul", ["flat", "weight"], ["logits"]),
        ]
        logits = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3])
        initializers = [weight]
    graph = helper.make_graph(nodes, "g", [images], [logits], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    model.metadata_props.add(key="deit", value=json.dumps(meta or _META.to_dict()))
    onnx.save(model, str(path))
    return path


def _meta_of(path: Path) -> CheckpointMeta:
    return read_onnx_meta(path, OnnxRuntimeModel(path, threads=1).session)


def test_a_graph_that_agrees_is_read_and_predicts(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = _graph_file(tmp_path / "m.onnx")
    assert _meta_of(path).num_classes == 3
    image = write_image(tmp_path / "a.png", seed=0)
    assert main(["predict", "--checkpoint", str(path), str(image), "--workers", "0"]) == 0
    assert capsys.readouterr().out.startswith(f"{image}: ")


@pytest.mark.parametrize(
    ("graph", "meta", "message"),
    [
        ({}, {"input_size": 4096}, "graph input (?, 3, 32, 32), its metadata (batch, 3, 4096, 4096)"),
        ({"output": "rank3"}, {}, "graph output of rank 3 (?, 3, 1024)"),
        ({}, {"num_classes": 5, "class_names": list("abcde")}, "graph output (?, 3), its metadata 5 classes"),
        ({}, {"model_kwargs": {"in_chans": 1}}, "its metadata (batch, 1, 32, 32)"),
    ],
)
def test_a_graph_that_disagrees_is_one_line_naming_what(
    tmp_path: Path, capsys: pytest.CaptureFixture, graph: dict, meta: dict, message: str
) -> None:
    path = _graph_file(tmp_path / "m.onnx", meta={**_META.to_dict(), **meta}, **graph)
    with pytest.raises(DeitError, match="m.onnx: its graph and its deit metadata disagree") as error:
        _meta_of(path)
    assert message in str(error.value)
    image = write_image(tmp_path / "a.png", seed=0)
    assert main(["predict", "--checkpoint", str(path), str(image), "--workers", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err
