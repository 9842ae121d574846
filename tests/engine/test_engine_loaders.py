"""The loaders `deit train` builds: evaluation workers live for the run, training workers start every epoch."""

from __future__ import annotations

from pathlib import Path

import torch

from conftest import make_image_folder
from deit import create_model
from deit.engine import builders, make_config
from deit.engine.distributed import read_launcher_env
from deit.engine.loop import evaluate


def test_evaluation_workers_persist_and_evaluate_as_without_workers(tmp_path: Path) -> None:
    data = make_image_folder(tmp_path / "data", classes=3, per_class=4)
    torch.manual_seed(0)
    model = create_model(
        "deit_tiny_patch16_224", img_size=32, patch_size=8, depth=1, embed_dim=16, num_heads=2, num_classes=3
    )
    results = {}
    for workers in (0, 1):
        config = make_config(
            model="deit_tiny_patch16_224",
            data_set="IMAGEFOLDER",
            data_path=str(data),
            input_size=32,
            batch_size=4,
            num_workers=workers,
            device="cpu",
        )
        train_set, val_set = builders.build_datasets(config, report_dir=None)
        loaders = builders.build_loaders(config, train_set, val_set, read_launcher_env(), torch.device("cpu"))
        # Training workers restart each epoch: their augmentation seeds come from the (checkpointed) torch RNG.
        assert not loaders.train.persistent_workers
        assert loaders.val.persistent_workers == (workers > 0)
        results[workers] = [evaluate(model, loaders.val, torch.device("cpu")) for _ in range(2)]  # the same workers
    assert results[1][0] == results[1][1] == results[0][0]
