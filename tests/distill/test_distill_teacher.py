"""The frozen teacher: eval forever, no gradient, re-normalisation, resize, weights from files and URLs."""

from __future__ import annotations

import functools
import http.server
import json
import threading
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from deit import create_model
from deit.distill import FrozenTeacher, build_teacher
from deit.errors import DeitError
from deit.models.meta import CheckpointMeta
from deit.models.registry import IMAGENET_MEAN, IMAGENET_STD

NUM_CLASSES = 5
STUDENT_MEAN, STUDENT_STD = IMAGENET_MEAN, IMAGENET_STD
TEACHER_MEAN, TEACHER_STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
TINY = dict(patch_size=8, depth=1, embed_dim=16, num_heads=2)


def conv_teacher(num_classes: int = NUM_CLASSES) -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, num_classes),
    )
    net[1].running_mean.uniform_(-1, 1)
    net[1].running_var.uniform_(0.5, 2)
    return net


def tiny_deit(num_classes: int = NUM_CLASSES) -> nn.Module:
    torch.manual_seed(0)
    return create_model("deit_tiny_patch16_224", img_size=16, num_classes=num_classes, **TINY).eval()


def train_checkpoint(model: nn.Module, *, num_classes: int = NUM_CLASSES, mean=TEACHER_MEAN, std=TEACHER_STD):
    meta = CheckpointMeta(
        model="deit_tiny_patch16_224",
        model_kwargs=dict(TINY),
        input_size=16,
        num_classes=num_classes,
        mean=tuple(mean),
        std=tuple(std),
        class_names=tuple(str(i) for i in range(num_classes)),
        deit_version="0.1.0",
    )
    return {"model": model.state_dict(), "epoch": 3, "args": {"lr": 5e-4}, "meta": meta.to_dict()}


def test_frozen_in_a_training_parent_bn_stats_unchanged_and_no_gradient():
    net = conv_teacher()
    stats = {k: v.clone() for k, v in net.state_dict().items()}
    teacher = FrozenTeacher(net)
    parent = nn.ModuleDict({"student": nn.Linear(2, 2), "teacher": teacher})
    parent.train()
    assert parent["student"].training
    assert not any(module.training for module in teacher.modules())
    images = torch.randn(4, 3, 12, 12, requires_grad=True)
    logits = teacher(images)
    assert logits.shape == (4, NUM_CLASSES) and not logits.requires_grad
    assert all(torch.equal(stats[k], v) for k, v in net.state_dict().items())
    assert not any(p.requires_grad for p in teacher.parameters())
    assert teacher.num_classes == NUM_CLASSES


def test_renormalisation_gives_the_predictions_of_the_teachers_own_normalisation():
    net = conv_teacher().eval()
    pixels = torch.rand(3, 3, 12, 12)
    student_input = (pixels - torch.tensor(STUDENT_MEAN)[:, None, None]) / torch.tensor(STUDENT_STD)[:, None, None]
    teacher_input = (pixels - torch.tensor(TEACHER_MEAN)[:, None, None]) / torch.tensor(TEACHER_STD)[:, None, None]
    expected = net(teacher_input)
    teacher = FrozenTeacher(
        net, student_mean=STUDENT_MEAN, student_std=STUDENT_STD, teacher_mean=TEACHER_MEAN, teacher_std=TEACHER_STD
    )
    assert teacher.renormalise
    torch.testing.assert_close(teacher(student_input), expected, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(net(student_input), expected, atol=1e-3)  # the correction matters


def test_resize_to_the_teachers_input_size_and_channels_last():
    net = conv_teacher().eval()
    seen = []
    net.register_forward_pre_hook(lambda _, args: seen.append(tuple(args[0].shape[-2:])))
    images = torch.randn(2, 3, 24, 24)
    resized = FrozenTeacher(net, input_size=12)(images)
    assert seen[-1] == (12, 12)
    FrozenTeacher(net, input_size=24)(images)
    assert seen[-1] == (24, 24)
    reference = FrozenTeacher(net)(images)
    torch.testing.assert_close(FrozenTeacher(net, channels_last=True)(images), reference, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(resized, reference)


def test_deit_train_checkpoint_rebuilds_the_variant_and_takes_mean_std_from_meta(tmp_path):
    source = tiny_deit()
    path = tmp_path / "checkpoint.pth"
    torch.save(train_checkpoint(source), path)
    teacher = build_teacher(
        "deit_tiny_patch16_224",
        num_classes=NUM_CLASSES,
        checkpoint=str(path),
        student_mean=STUDENT_MEAN,
        student_std=STUDENT_STD,
    )
    assert teacher.renormalise and teacher.input_size == 16
    pixels = torch.rand(2, 3, 16, 16)
    student_input = (pixels - torch.tensor(STUDENT_MEAN)[:, None, None]) / torch.tensor(STUDENT_STD)[:, None, None]
    expected = source((pixels - 0.5) / 0.5)
    torch.testing.assert_close(teacher(student_input), expected, rtol=1e-4, atol=1e-4)
    # A student at another resolution: the teacher's input is resized to the 16 px it was trained at.
    assert teacher(torch.randn(2, 3, 32, 32)).shape == (2, NUM_CLASSES)


def test_official_and_safetensors_weights(tmp_path):
    source = tiny_deit()
    official = tmp_path / "official.pth"
    torch.save({"model": {f"module.{k}": v for k, v in source.state_dict().items()}}, official)
    exported = tmp_path / "model.safetensors"
    meta = train_checkpoint(source)["meta"]
    save_file(source.state_dict(), str(exported), metadata={"deit": json.dumps(meta)})
    images = torch.randn(2, 3, 16, 16)
    for checkpoint in (official, exported):
        student = tiny_deit()
        torch.manual_seed(123)
        student.apply(lambda m: nn.init.normal_(m.weight) if isinstance(m, nn.Linear) else None)
        teacher = build_teacher(
            student,
            num_classes=NUM_CLASSES,
            checkpoint=str(checkpoint),
            student_mean=TEACHER_MEAN,
            student_std=TEACHER_STD,
        )
        torch.testing.assert_close(teacher(images), source(images), rtol=1e-5, atol=1e-5)
    assert build_teacher(tiny_deit(), num_classes=NUM_CLASSES, checkpoint=str(exported)).renormalise


def test_timm_teacher_by_name_from_a_state_dict(tmp_path):
    import timm

    torch.manual_seed(0)
    source = timm.create_model("test_resnet", num_classes=NUM_CLASSES).eval()
    path = tmp_path / "timm.pth"
    torch.save({"state_dict": source.state_dict()}, path)
    teacher = build_teacher("test_resnet", num_classes=NUM_CLASSES, checkpoint=str(path))
    images = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(teacher(images), source(images), rtol=1e-5, atol=1e-5)


def test_class_count_mismatch_is_one_line_naming_both_numbers(tmp_path):
    with pytest.raises(DeitError, match=r"teacher 'Sequential' predicts 7 classes but the data has 5") as caught:
        build_teacher(conv_teacher(7), num_classes=NUM_CLASSES)
    assert "\n" not in str(caught.value)
    with_meta = tmp_path / "checkpoint.pth"
    torch.save(train_checkpoint(tiny_deit(9), num_classes=9), with_meta)
    with pytest.raises(DeitError, match=r"deit_tiny_patch16_224.*predicts 9 classes but the data has 5"):
        build_teacher("deit_tiny_patch16_224", num_classes=NUM_CLASSES, checkpoint=str(with_meta))
    plain = tmp_path / "plain.pth"
    torch.save({"model": tiny_deit(9).state_dict()}, plain)
    with pytest.raises(DeitError, match=r"plain.pth.*predicts 9 classes but the data has 5"):
        build_teacher(tiny_deit(), num_classes=NUM_CLASSES, checkpoint=str(plain))


def test_weights_of_another_architecture_and_missing_files(tmp_path):
    other = tmp_path / "other.pth"
    torch.save({"model": conv_teacher().state_dict()}, other)
    with pytest.raises(DeitError, match="does not fit"):
        build_teacher(tiny_deit(), num_classes=NUM_CLASSES, checkpoint=str(other))
    with pytest.raises(DeitError, match="no such"):
        build_teacher(tiny_deit(), num_classes=NUM_CLASSES, checkpoint=str(tmp_path / "absent.pth"))


def test_a_checkpoint_of_another_named_model_says_what_the_file_holds(tmp_path):
    import timm

    resnet18 = timm.create_model("resnet18", num_classes=NUM_CLASSES)
    checkpoint = train_checkpoint(resnet18)
    checkpoint["meta"] = {**checkpoint["meta"], "model": "resnet18", "model_kwargs": {}, "input_size": 32}
    path = tmp_path / "checkpoint.pth"
    torch.save(checkpoint, path)
    with pytest.raises(DeitError) as error:
        build_teacher("resnet10t", num_classes=NUM_CLASSES, checkpoint=str(path))
    assert str(error.value) == (
        f"teacher 'resnet10t' ({path}): the file holds a resnet18 at 32 px ({NUM_CLASSES} classes), not a "
        f"resnet10t; pass --teacher-model resnet18"
    )
    assert build_teacher("resnet18", num_classes=NUM_CLASSES, checkpoint=str(path)).name == "resnet18"


class _CountingHandler(http.server.SimpleHTTPRequestHandler):
    requests: list[str] = []

    def do_GET(self):  # noqa: N802 (http.server's naming)
        type(self).requests.append(self.path)
        super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture()
def file_server(tmp_path, monkeypatch):
    served = tmp_path / "served"
    served.mkdir()
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    _CountingHandler.requests = []
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_CountingHandler, directory=str(served))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_url_weights_are_downloaded_once_into_the_hub_cache(file_server, tmp_path):
    served, base_url = file_server
    source = tiny_deit()
    torch.save({"model": source.state_dict()}, served / "teacher.pth")
    images = torch.randn(2, 3, 16, 16)
    for _ in range(2):
        teacher = build_teacher(tiny_deit(), num_classes=NUM_CLASSES, checkpoint=f"{base_url}/teacher.pth")
        torch.testing.assert_close(teacher(images), source(images), rtol=1e-5, atol=1e-5)
    assert _CountingHandler.requests == ["/teacher.pth"]
    assert (tmp_path / "torch_home" / "hub" / "checkpoints" / "teacher.pth").is_file()


def test_url_errors_name_the_url(file_server):
    served, base_url = file_server
    with pytest.raises(DeitError, match=r"absent.pth.*pass the file's path as checkpoint=$"):
        build_teacher(tiny_deit(), num_classes=NUM_CLASSES, checkpoint=f"{base_url}/absent.pth")
    torch.save({"model": tiny_deit().state_dict()}, served / "teacher-deadbeef.pth")  # a name promising a hash
    with pytest.raises(DeitError, match=r"teacher-deadbeef.pth.*sha256"):
        build_teacher(tiny_deit(), num_classes=NUM_CLASSES, checkpoint=f"{base_url}/teacher-deadbeef.pth")


def test_teacher_meta_is_checked_against_its_tensors_before_building(tmp_path: Path) -> None:
    import deit
    from deit.distill.teacher import build_teacher
    from deit.errors import DeitError
    from deit.models.checkpoint import save_weights

    kwargs = {"depth": 1, "patch_size": 8, "embed_dim": 32, "num_heads": 2}
    model = deit.create_model("deit_tiny_patch16_224", img_size=32, num_classes=3, **kwargs)
    path = tmp_path / "teacher.safetensors"
    save_weights(
        model,
        path,
        CheckpointMeta(
            model="deit_tiny_patch16_224", model_kwargs={**kwargs, "depth": 5000}, input_size=32, num_classes=3
        ),
    )
    with pytest.raises(DeitError, match="depth=5000"):
        build_teacher("deit_tiny_patch16_224", num_classes=3, checkpoint=path)
