"""Reading, rebuilding and adapting checkpoints: training checkpoints, exports, resampling, heads, key errors."""

from __future__ import annotations

import argparse
import dataclasses
import json
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from deit.errors import DeitError
from deit.io import load_torch_file
from deit.models import create_model, load_trained_model
from deit.models.checkpoint import (
    default_meta,
    read_state_dict,
    resample_pos_embed,
    save_weights,
)

SMALL = dict(img_size=32, patch_size=8, depth=2, num_classes=10)


def _images(size: int = 32) -> torch.Tensor:
    return torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(7))


def _official_resample(pos_embed: torch.Tensor, num_extra_tokens: int, new_size: int) -> torch.Tensor:
    # The fine-tuning recipe of the official repository, written out independently of the package.
    dim = pos_embed.shape[-1]
    orig_size = int((pos_embed.shape[-2] - num_extra_tokens) ** 0.5)
    extra = pos_embed[:, :num_extra_tokens]
    grid = pos_embed[:, num_extra_tokens:].reshape(-1, orig_size, orig_size, dim).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=(new_size, new_size), mode="bicubic", align_corners=False)
    return torch.cat((extra, grid.permute(0, 2, 3, 1).flatten(1, 2)), dim=1)


@pytest.mark.parametrize(
    ("name", "extra_rows"),
    [("deit_tiny_distilled_patch16_224", 2), ("deit_tiny_patch16_224", 1), ("deit3_small_patch16_224", 0)],
)
def test_position_embedding_is_resampled_like_official_fine_tuning(tmp_path: Path, name: str, extra_rows: int) -> None:
    torch.manual_seed(0)
    source = create_model(name, **SMALL)
    torch.save({"model": source.state_dict()}, tmp_path / "low_res.pth")
    target = create_model(name, pretrained=tmp_path / "low_res.pth", **dict(SMALL, img_size=48))
    expected = _official_resample(source.pos_embed.detach(), extra_rows, 6)
    assert target.pos_embed.shape == expected.shape == (1, extra_rows + 36, source.embed_dim)
    torch.testing.assert_close(target.pos_embed.detach(), expected, rtol=0, atol=0)
    # Prefix rows (class / distillation position) are carried over untouched; all other weights too.
    torch.testing.assert_close(target.pos_embed[:, :extra_rows], source.pos_embed[:, :extra_rows])
    torch.testing.assert_close(target.blocks[1].mlp.fc2.weight, source.blocks[1].mlp.fc2.weight)


def test_resample_224_to_384_grid() -> None:
    pos_embed = torch.randn(1, 2 + 14 * 14, 8)
    resampled = resample_pos_embed(pos_embed, num_prefix_tokens=2, grid_size=24)
    torch.testing.assert_close(resampled, _official_resample(pos_embed, 2, 24), rtol=0, atol=0)
    # Downsampling too (where timm's default antialiasing would differ from the official recipe).
    downsampled = resample_pos_embed(resampled, num_prefix_tokens=2, grid_size=7)
    torch.testing.assert_close(downsampled, _official_resample(resampled, 2, 7), rtol=0, atol=0)
    with pytest.raises(DeitError, match="not 1 prefix row"):
        resample_pos_embed(pos_embed, num_prefix_tokens=1, grid_size=24)


def test_different_class_count_drops_both_heads_with_a_warning(tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = create_model("deit_tiny_distilled_patch16_224", **SMALL)
    torch.save(source.state_dict(), tmp_path / "ten_classes.pth")
    torch.manual_seed(1)
    fresh = create_model("deit_tiny_distilled_patch16_224", **dict(SMALL, num_classes=3))
    torch.manual_seed(1)
    with pytest.warns(UserWarning, match="10 classes, the model 3: its heads are dropped"):
        loaded = create_model(
            "deit_tiny_distilled_patch16_224", pretrained=tmp_path / "ten_classes.pth", **dict(SMALL, num_classes=3)
        )
    assert loaded.head.out_features == loaded.head_dist.out_features == 3
    torch.testing.assert_close(loaded.head.weight, fresh.head.weight)  # the fresh head, same seed
    torch.testing.assert_close(loaded.cls_token, source.cls_token)
    torch.testing.assert_close(loaded.blocks[0].attn.qkv.weight, source.blocks[0].attn.qkv.weight)


def test_same_class_count_loads_without_warning(tmp_path: Path) -> None:
    source = create_model("deit_tiny_patch16_224", **SMALL)
    torch.save(source.state_dict(), tmp_path / "weights.pth")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = create_model("deit_tiny_patch16_224", pretrained=tmp_path / "weights.pth", **SMALL).eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(_images()), source.eval()(_images()))


def test_mismatched_keys_are_named(tmp_path: Path) -> None:
    distilled = create_model("deit_tiny_distilled_patch16_224", **SMALL)
    torch.save(distilled.state_dict(), tmp_path / "distilled.pth")
    with pytest.raises(DeitError, match=r"distilled\.pth: does not fit the model: unexpected key\(s\) dist_token"):
        create_model("deit_tiny_patch16_224", pretrained=tmp_path / "distilled.pth", **SMALL)

    state = create_model("deit_tiny_patch16_224", **SMALL).state_dict()
    del state["blocks.1.norm2.bias"]
    torch.save(state, tmp_path / "missing.pth")
    with pytest.raises(DeitError, match=r"missing key\(s\) blocks\.1\.norm2\.bias"):
        create_model("deit_tiny_patch16_224", pretrained=tmp_path / "missing.pth", **SMALL)

    wide = create_model("deit_small_patch16_224", **SMALL)
    torch.save(wide.state_dict(), tmp_path / "wide.pth")
    with pytest.raises(DeitError, match=r"mis-shaped key\(s\) cls_token \(1, 1, 384\) vs model \(1, 1, 192\)"):
        create_model("deit_tiny_patch16_224", pretrained=tmp_path / "wide.pth", **SMALL)


def test_training_checkpoint_rebuilds_model_and_meta(tmp_path: Path) -> None:
    model = create_model("deit_tiny_distilled_patch16_224", **SMALL)
    ema = create_model("deit_tiny_distilled_patch16_224", **SMALL)
    meta = default_meta(
        "deit_tiny_distilled_patch16_224",
        img_size=32,
        num_classes=10,
        model_kwargs={"patch_size": 8, "depth": 2},
        class_names=[f"digit {i}" for i in range(10)],
    )
    optimizer = torch.optim.AdamW(model.parameters())
    # The layout `deit train` writes (docs/architecture.md), loadable with weights_only=True.
    torch.save(
        {
            "model": model.state_dict(),
            "model_ema": ema.state_dict(),
            "optimizer": optimizer.state_dict(),
            "epoch": 3,
            "args": {"lr": 5e-4, "model": meta.model},
            "meta": meta.to_dict(),
            "best_acc": 91.5,
        },
        tmp_path / "checkpoint.pth",
    )
    rebuilt, rebuilt_meta = load_trained_model(tmp_path / "checkpoint.pth")
    assert rebuilt_meta == meta and not rebuilt.training
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(_images()), model.eval()(_images()))
    rebuilt_ema, _ = load_trained_model(tmp_path / "checkpoint.pth", use_ema=True)
    torch.testing.assert_close(rebuilt_ema.cls_token, ema.cls_token)


def test_safetensors_export_round_trip(tmp_path: Path) -> None:
    model = create_model("deit3_small_patch16_224", **SMALL).eval()
    meta = default_meta(
        "deit3_small_patch16_224", img_size=32, num_classes=10, model_kwargs={"patch_size": 8, "depth": 2}
    )
    save_weights(model, tmp_path / "export" / "model.safetensors", meta)
    assert sorted(p.name for p in (tmp_path / "export").iterdir()) == ["model.safetensors"]  # no temp left
    for location in (tmp_path / "export" / "model.safetensors", tmp_path / "export"):
        rebuilt, rebuilt_meta = load_trained_model(location)
        assert rebuilt_meta == meta
        with torch.no_grad():
            torch.testing.assert_close(rebuilt(_images()), model(_images()))
    with pytest.raises(DeitError, match="not JSON-serialisable"):
        save_weights(model, tmp_path / "bad.safetensors", dataclasses.replace(meta, extra={"x": object()}))


def test_weights_alone_are_matched_to_a_registered_model(tmp_path: Path) -> None:
    model = create_model("deit3_medium_patch16_224", **SMALL)
    torch.save({"model": model.state_dict()}, tmp_path / "deit3.pth")
    rebuilt, meta = load_trained_model(tmp_path / "deit3.pth")
    assert meta.model == "deit3_medium_patch16_224"
    assert meta.model_kwargs == {"depth": 2, "patch_size": 8}
    assert meta.class_names == tuple(f"class_{i}" for i in range(10))
    assert meta.crop_pct == 0.875 and meta.input_size == 32
    # A width no registered model has: the head count cannot be read off the weights, so it must be given.
    custom = create_model("deit_tiny_patch16_224", **SMALL, embed_dim=64, num_heads=4)
    torch.save(custom.state_dict(), tmp_path / "custom.pth")
    with pytest.warns(UserWarning, match="assuming 1"):
        load_trained_model(tmp_path / "custom.pth")
    rebuilt, meta = load_trained_model(tmp_path / "custom.pth", num_heads=4)
    assert meta.model_kwargs["num_heads"] == 4
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(_images()), custom.eval()(_images()))
    with pytest.warns(UserWarning, match="assuming 8"):
        named, meta = load_trained_model(tmp_path / "deit3.pth", model_name="deit3_small_patch16_224")
    assert meta.model == "deit3_small_patch16_224" and meta.model_kwargs["embed_dim"] == 512


@pytest.mark.parametrize("wrapper", ["state_dict", "model_ema", "module"])
def test_read_state_dict_unwraps_containers(tmp_path: Path, wrapper: str) -> None:
    state = create_model("deit_tiny_patch16_224", **SMALL).state_dict()
    if wrapper == "module":
        payload: object = {f"module.{key}": value for key, value in state.items()}
    else:
        payload = {wrapper: state, "epoch": 1}
    torch.save(payload, tmp_path / "wrapped.pth")
    read = read_state_dict(tmp_path / "wrapped.pth")
    assert read.keys() == state.keys()


def test_refused_and_garbled_files_give_one_line_errors(tmp_path: Path, hostile_payload) -> None:
    marker = tmp_path / "code_ran"
    good = create_model("deit_tiny_patch16_224", **SMALL).state_dict()
    torch.save({"model": good, "args": hostile_payload(marker)}, tmp_path / "hostile.pth")
    (tmp_path / "truncated.pth").write_bytes((tmp_path / "hostile.pth").read_bytes()[:300])
    (tmp_path / "noise.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}")
    (tmp_path / "bad_meta.safetensors").write_bytes(b"")
    torch.save({"model": {"cls_token": torch.zeros(1), "note": "text"}}, tmp_path / "not_tensors.pth")
    torch.save([1, 2, 3], tmp_path / "a_list.pth")
    cases = {
        "hostile.pth": "pickled Python objects",
        "truncated.pth": "cannot be read as a checkpoint",
        "noise.safetensors": "cannot be read as safetensors",
        "bad_meta.safetensors": "cannot be read as safetensors",
        "not_tensors.pth": "entry 'note' is not a tensor",
        "a_list.pth": "holds no state dict",
        "absent.pth": "no such file",
    }
    for file_name, reason in cases.items():
        for load in (
            read_state_dict,
            lambda p: load_trained_model(p),
            lambda p: create_model("deit_tiny_patch16_224", pretrained=p, **SMALL),
        ):
            with pytest.raises(DeitError) as caught:
                load(tmp_path / file_name)
            message = str(caught.value)
            assert file_name in message and reason in message and "\n" not in message, message
    assert not marker.exists()


def test_export_metadata_that_is_not_json_is_refused(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(tmp_path / "odd.safetensors"), metadata={"deit": "{oops"})
    with pytest.raises(DeitError, match="odd.safetensors: its 'deit' metadata is not valid JSON"):
        load_trained_model(tmp_path / "odd.safetensors")
    assert json.loads(json.dumps(default_meta("deit_tiny_patch16_224", img_size=224, num_classes=2).to_dict()))


class _NotAnArgumentContainer(argparse.Namespace):
    """A class of the user's own: allowing Namespace must not allow its subclasses."""


def _official_main_checkpoint(model: torch.nn.Module, args: object) -> dict:
    """The dict official main.py saves: `args` is its argparse.Namespace."""
    return {
        "model": model.state_dict(),
        "optimizer": {"state": {}, "param_groups": []},
        "lr_scheduler": {"t_initial": 300},
        "epoch": 299,
        "model_ema": model.state_dict(),
        "scaler": {},
        "args": args,
    }


def test_official_main_checkpoints_load_with_their_namespace_args(tmp_path: Path) -> None:
    reference = create_model("deit_tiny_distilled_patch16_224", **SMALL).eval()
    args = argparse.Namespace(
        model="deit_tiny_distilled_patch16_224",
        input_size=32,
        lr=5e-4,
        opt_betas=None,
        cutmix_minmax=None,
        data_set="IMNET",
        data_path="/data/imagenet",
    )
    torch.save(_official_main_checkpoint(reference, args), tmp_path / "official.pth")
    assert load_torch_file(tmp_path / "official.pth")["args"] == vars(args)  # one shape for every reader
    assert read_state_dict(tmp_path / "official.pth").keys() == reference.state_dict().keys()
    rebuilt, meta = load_trained_model(
        tmp_path / "official.pth", model_name="deit_tiny_distilled_patch16_224", num_heads=3
    )
    pretrained = create_model("deit_tiny_distilled_patch16_224", pretrained=tmp_path / "official.pth", **SMALL)
    for model in (rebuilt, pretrained.eval()):
        torch.testing.assert_close(model(_images()), reference(_images()), rtol=0, atol=0)


@pytest.mark.parametrize("container", ["namespace_holding_code", "namespace_subclass"])
def test_only_plain_namespaces_are_allowed(tmp_path: Path, hostile_payload, container: str) -> None:
    marker = tmp_path / "code_ran"
    model = create_model("deit_tiny_patch16_224", **SMALL)
    if container == "namespace_holding_code":
        args: object = argparse.Namespace(model="deit_tiny_patch16_224", hook=hostile_payload(marker))
    else:
        args = _NotAnArgumentContainer(model="deit_tiny_patch16_224")
    torch.save(_official_main_checkpoint(model, args), tmp_path / "hostile.pth")
    for load in (
        read_state_dict,
        load_trained_model,
        load_torch_file,
        lambda p: create_model("deit_tiny_patch16_224", pretrained=p, **SMALL),
    ):
        with pytest.raises(DeitError, match="hostile.pth: .*pickled Python objects"):
            load(tmp_path / "hostile.pth")
    assert not marker.exists()


def test_use_ema_reads_the_ema_of_an_official_training_checkpoint(tmp_path: Path) -> None:
    model = create_model("deit_tiny_distilled_patch16_224", **SMALL).eval()
    ema = create_model("deit_tiny_distilled_patch16_224", **SMALL).eval()  # other random weights: the EMA
    args = argparse.Namespace(model="deit_tiny_distilled_patch16_224", input_size=32, data_set="IMNET")
    checkpoint = dict(_official_main_checkpoint(model, args), model_ema=ema.state_dict())
    torch.save(checkpoint, tmp_path / "official.pth")
    options = dict(model_name="deit_tiny_distilled_patch16_224", num_heads=3)
    with torch.no_grad():
        rebuilt_ema, _ = load_trained_model(tmp_path / "official.pth", use_ema=True, **options)
        torch.testing.assert_close(rebuilt_ema(_images()), ema(_images()), rtol=0, atol=0)
        rebuilt, _ = load_trained_model(tmp_path / "official.pth", **options)
        torch.testing.assert_close(rebuilt(_images()), model(_images()), rtol=0, atol=0)
        assert not torch.allclose(rebuilt_ema(_images()), rebuilt(_images()))


@pytest.mark.parametrize("layout", ["official_without_ema", "release", "export"])
def test_use_ema_without_ema_weights_is_one_line(tmp_path: Path, layout: str) -> None:
    model = create_model("deit_tiny_patch16_224", **SMALL)
    if layout == "official_without_ema":
        checkpoint = _official_main_checkpoint(model, argparse.Namespace(model="deit_tiny_patch16_224"))
        del checkpoint["model_ema"]
        torch.save(checkpoint, tmp_path / "file.pth")
    elif layout == "release":
        torch.save({"model": model.state_dict()}, tmp_path / "file.pth")
    else:
        save_weights(
            model,
            tmp_path / "file.pth",
            default_meta(
                "deit_tiny_patch16_224", img_size=32, num_classes=10, model_kwargs={"patch_size": 8, "depth": 2}
            ),
        )
    with pytest.raises(DeitError, match=r"file.pth: holds no EMA weights \('model_ema'") as error:
        load_trained_model(tmp_path / "file.pth", use_ema=True, model_name="deit_tiny_patch16_224", num_heads=3)
    assert "\n" not in str(error.value)
    load_trained_model(tmp_path / "file.pth", model_name="deit_tiny_patch16_224", num_heads=3)  # without: loads
