"""An NVIDIA DALI input pipeline: JPEG decode, the paper's train transform and normalisation on the GPU.

Train: decode + RandomResizedCrop (scale 0.08–1, ratio 3/4–4/3, bicubic), horizontal flip, RandAugment
(DALI's `auto_aug.rand_augment`, n 2, m 9), normalisation to CHW float. Eval: resize the short side to
`input_size / crop_ratio` (bicubic), centre crop, normalise — the transforms of `deit.data.transforms`.
Mixup/cutmix stay on the batch as with the torch loader. Not yet here: random erasing, colour jitter.

The files come from a `SampleSource` (`.samples`: `(path, label)` pairs, `.classes`): a `FolderDataset`
today, so bad files are probed, skipped and reported by exactly the torch loader's code before DALI sees
them; a shard reader can provide the same two attributes. Each rank reads shard `rank` of `world_size`
(`shard_id`/`num_shards`), so an epoch sees every image once across ranks.

`device_id=None` runs the whole pipeline on the CPU (DALI ≥ 2.4, RandAugment included with
`enable_conditionals=True`): that is how the tests run without a GPU.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from deit.errors import DeitError

DALI_EXTRA_HINT = "pip install 'deit[dali]' (the nvidia-dali-cuda130 package)"
_SCALE = (0.08, 1.0)
_RATIO = (3 / 4, 4 / 3)


class SampleSource(Protocol):
    """What the pipeline reads: labelled file paths (already checked) and the class names."""

    samples: list[tuple[str, int]]
    classes: list[str]


def require_dali() -> Any:
    """The `nvidia.dali` module, or a one-line `DeitError` naming the extra."""
    try:
        import nvidia.dali as dali
    except ImportError as error:
        raise DeitError(f"--data-loader dali needs NVIDIA DALI: {DALI_EXTRA_HINT}") from error
    return dali


@dataclass
class DaliSettings:
    """The transform's knobs (the paper's defaults)."""

    input_size: int = 224
    mean: Sequence[float] = (0.485, 0.456, 0.406)
    std: Sequence[float] = (0.229, 0.224, 0.225)
    hflip: float = 0.5
    rand_augment: bool = True  # n 2, m 9 (the paper's rand-m9-mstd0.5-inc1 without the magnitude noise)
    eval_crop_ratio: float = 0.875


def build_pipeline(source: SampleSource, settings: DaliSettings, *, train: bool, batch_size: int,
                   shard_id: int = 0, num_shards: int = 1, device_id: int | None = None, num_threads: int = 2,
                   seed: int = 0) -> Any:
    """A built DALI pipeline yielding `(images, labels)`; `device_id=None` keeps everything on the CPU."""
    dali = require_dali()
    from nvidia.dali import fn, types

    if not source.samples:
        raise DeitError("the DALI pipeline has no images to read")
    if not 0 <= shard_id < num_shards:
        raise DeitError(f"shard {shard_id} of {num_shards}: the rank must be in [0, world size)")
    files = [path for path, _ in source.samples]
    labels = [int(label) for _, label in source.samples]
    gpu = device_id is not None
    scale = [255.0 * float(value) for value in settings.mean], [255.0 * float(value) for value in settings.std]
    size = int(settings.input_size)

    @dali.pipeline_def(batch_size=batch_size, num_threads=num_threads, device_id=device_id, seed=seed,
                       enable_conditionals=train and settings.rand_augment, exec_dynamic=True)
    def pipeline() -> tuple[Any, Any]:
        encoded, label = fn.readers.file(files=files, labels=labels, shard_id=shard_id, num_shards=num_shards,
                                         random_shuffle=train, stick_to_shard=True, pad_last_batch=True,
                                         name="reader", seed=seed)
        decoder = "mixed" if gpu else "cpu"
        if train:
            images = fn.decoders.image_random_crop(encoded, device=decoder, output_type=types.RGB,
                                                   random_area=list(_SCALE), random_aspect_ratio=list(_RATIO),
                                                   num_attempts=10)
            images = fn.resize(images, resize_x=size, resize_y=size, interp_type=types.INTERP_CUBIC,
                               antialias=True)
            if settings.rand_augment:
                from nvidia.dali.auto_aug import rand_augment

                images = rand_augment.rand_augment(images, n=2, m=9)
            mirror = fn.random.coin_flip(probability=settings.hflip)
            images = fn.crop_mirror_normalize(images, dtype=types.FLOAT, output_layout="CHW", mean=scale[0],
                                              std=scale[1], mirror=mirror)
        else:
            images = fn.decoders.image(encoded, device=decoder, output_type=types.RGB)
            images = fn.resize(images, resize_shorter=int(size / settings.eval_crop_ratio),
                               interp_type=types.INTERP_CUBIC, antialias=True)
            images = fn.crop_mirror_normalize(images, dtype=types.FLOAT, output_layout="CHW", crop=(size, size),
                                              crop_pos_x=0.5, crop_pos_y=0.5, mean=scale[0], std=scale[1])
        return images, label.gpu() if gpu else label

    built = pipeline()
    built.build()
    return built


class DaliLoader:
    """Iterates one rank's shard as `(images (B,3,H,W) float, labels (B,) int64)` torch batches, epoch by epoch.

    Each rank keeps its contiguous shard (`stick_to_shard`; shuffled within it when training) and the last batch
    of an epoch is trimmed to the shard's own images (DALI pads it by repetition), so the ranks together see
    every image exactly once per epoch.
    """

    def __init__(self, source: SampleSource, settings: DaliSettings, *, train: bool, batch_size: int,
                 shard_id: int = 0, num_shards: int = 1, device_id: int | None = None, num_threads: int = 2,
                 seed: int = 0, drop_last: bool = False) -> None:
        self.drop_last = drop_last  # training: full batches only (mixup pairs samples), as the torch loader
        self.pipeline = build_pipeline(source, settings, train=train, batch_size=batch_size, shard_id=shard_id,
                                       num_shards=num_shards, device_id=device_id, num_threads=num_threads,
                                       seed=seed)
        self.batch_size = batch_size
        total = len(source.samples)  # DALI's contiguous shards: [total·id/n, total·(id+1)/n)
        self.shard_size = total * (shard_id + 1) // num_shards - total * shard_id // num_shards
        self.classes = source.classes

    def __len__(self) -> int:
        if self.drop_last:
            return self.shard_size // self.batch_size
        return -(-self.shard_size // self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """The engine's sampler hook: DALI's reader reshuffles its shard by itself at every epoch."""

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        remaining = self.shard_size
        for _ in range(len(self)):
            images, labels = self.pipeline.run()
            take = min(remaining, self.batch_size)  # DALI pads the shard's last batch: keep its own images only
            yield (_to_torch(images)[:take], _to_torch(labels).reshape(-1)[:take].long())
            remaining -= take
        self.pipeline.reset()


def _to_torch(batch: Any) -> torch.Tensor:
    """A dense DALI TensorList as a torch tensor (copied; CPU or the pipeline's GPU)."""
    dense = batch.as_tensor()
    if hasattr(dense, "as_cpu") and type(dense).__name__.endswith("GPU"):
        from nvidia.dali.plugin.pytorch import feed_ndarray

        out = torch.empty(dense.shape(), dtype=torch.float32 if "float" in str(dense.dtype).lower() else
                          torch.int32, device="cuda")
        feed_ndarray(dense, out)
        return out
    return torch.from_numpy(__import__("numpy").array(dense))


__all__ = ["DALI_EXTRA_HINT", "DaliLoader", "DaliSettings", "SampleSource", "build_pipeline", "require_dali"]
