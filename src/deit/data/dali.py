"""An NVIDIA DALI input pipeline: JPEG decode, the paper's train transform and normalisation on the GPU.

Train, as `deit.data.transforms` with the same flags: decode + RandomResizedCrop (scale 0.08–1, ratio 3/4–4/3,
bicubic; for inputs of 32 pixels or less the official CIFAR crop instead), horizontal flip, RandAugment (timm's
`rand-m9-mstd0.5-inc1` on DALI's `auto_aug` ops, without the magnitude noise) when `--aa` names a policy,
else colour jitter (`--color-jitter`, as timm), normalisation to CHW float, random erasing
(`--reprob/--remode/--recount`, timm's semantics). Eval: resize the short side to `input_size / crop_ratio`
(bicubic), centre crop, normalise. Mixup/cutmix stay on the batch as with the torch loader. The augmentations are in `deit.data.dali_augment`.

The files come from a `SampleSource` (`.samples`: `(path, label)` pairs, `.classes`): a `FolderDataset`
today, so bad files are probed, skipped and reported by exactly the torch loader's code before DALI sees
them. Training order: epoch `e` shuffles all files with `torch.randperm` seeded by `seed + e` (the permutation
`DistributedSampler` draws) and rank `r` of `n` reads every n-th file from position r, so an epoch sees every
image once across ranks and a resumed run replays the interrupted run's order (and augmentations) for each
epoch. Evaluation: rank `r` reads the r-th contiguous slice, in order.

`device_id=None` runs the whole pipeline on the CPU (DALI ≥ 2.4, RandAugment included with
`enable_conditionals=True`): that is how the tests run without a GPU.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from deit.data.transforms import augment_policy_set
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


def check_dali_flags(*, auto_augment: str | None, three_augment: bool, simple_random_crop: bool,
                     interpolation: str) -> None:
    """A one-line `DeitError` naming the training-transform flag the DALI pipeline does not implement."""
    unsupported = [flag for flag, used in (("--three-augment", three_augment), ("--src", simple_random_crop),
                                           (f"--train-interpolation {interpolation}", interpolation != "bicubic"))
                   if used]
    if unsupported:
        raise DeitError(f"--data-loader dali does not implement {', '.join(unsupported)}; use --data-loader torch")
    if augment_policy_set(auto_augment):
        from deit.data.dali_augment import parse_rand_augment

        try:
            parse_rand_augment(str(auto_augment))
        except ValueError as error:
            raise DeitError(f"--data-loader dali with --aa {auto_augment}: {error}; use --data-loader torch"
                            ) from error


@dataclass
class DaliSettings:
    """The transform's knobs (the paper's defaults; the flags of `deit.data.transforms.build_transform`)."""

    input_size: int = 224
    mean: Sequence[float] = (0.485, 0.456, 0.406)
    std: Sequence[float] = (0.229, 0.224, 0.225)
    hflip: float = 0.5
    auto_augment: str | None = "rand-m9-mstd0.5-inc1"  # timm's RandAugment policies (inc1); None: off
    color_jitter: float | None = 0.3  # applied only without RandAugment, as timm
    reprob: float = 0.25
    remode: str = "pixel"
    recount: int = 1
    eval_crop_ratio: float = 0.875


def build_pipeline(source: SampleSource, settings: DaliSettings, *, train: bool, batch_size: int,
                   shard_id: int = 0, num_shards: int = 1, device_id: int | None = None, num_threads: int = 2,
                   seed: int = 0, epoch: int = 0) -> Any:
    """A built DALI pipeline yielding `(images, labels)` for one rank and epoch; `device_id=None`: CPU only."""
    dali = require_dali()
    from nvidia.dali import fn, types

    if not source.samples:
        raise DeitError("the DALI pipeline has no images to read")
    if not 0 <= shard_id < num_shards:
        raise DeitError(f"shard {shard_id} of {num_shards}: the rank must be in [0, world size)")
    samples = shard_samples(source.samples, shard_id=shard_id, num_shards=num_shards, shuffle_seed=(
        seed + epoch if train else None))
    files = [path for path, _ in samples]
    labels = [int(label) for _, label in samples]
    gpu = device_id is not None
    size = int(settings.input_size)
    rand_augment = augment_policy_set(settings.auto_augment)
    jitter = train and not rand_augment and bool(settings.color_jitter)

    @dali.pipeline_def(batch_size=batch_size, num_threads=num_threads, device_id=device_id,
                       seed=_augment_seed(seed, epoch, shard_id, num_shards),
                       enable_conditionals=train and (rand_augment or jitter), exec_dynamic=True)
    def pipeline() -> tuple[Any, Any]:
        encoded, label = fn.readers.file(files=files, labels=labels, random_shuffle=False, pad_last_batch=True,
                                         name="reader")
        decoder = "mixed" if gpu else "cpu"
        if train:
            images = _train_images(encoded, settings, decoder=decoder, jitter=jitter)
        else:
            images = fn.decoders.image(encoded, device=decoder, output_type=types.RGB)
            images = fn.resize(images, resize_shorter=int(size / settings.eval_crop_ratio),
                               interp_type=types.INTERP_CUBIC, antialias=True)
            images = _normalize(images, settings, crop=(size, size))
        return images, label.gpu() if gpu else label

    with warnings.catch_warnings(record=True) as caught:  # recorded: DALI forces its deprecation warnings on
        built = pipeline()
        built.build()
    for warning in caught:  # DALI's own auto_aug calls its deprecated fn.experimental aliases: not the user's
        if not issubclass(warning.category, DeprecationWarning):
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    return built


def _train_images(encoded: Any, settings: DaliSettings, *, decoder: str, jitter: bool) -> Any:
    from nvidia.dali import fn, types

    from deit.data.dali_augment import color_jitter, rand_augment, random_erasing, small_input_crop
    from deit.data.transforms import SMALL_INPUT

    size = int(settings.input_size)
    if size <= SMALL_INPUT:  # as our torch transform: the official CIFAR crop for tiny inputs
        images = small_input_crop(fn.decoders.image(encoded, device=decoder, output_type=types.RGB), size)
    else:
        images = fn.decoders.image_random_crop(encoded, device=decoder, output_type=types.RGB,
                                               random_area=list(_SCALE), random_aspect_ratio=list(_RATIO),
                                               num_attempts=10)
        images = fn.resize(images, resize_x=size, resize_y=size, interp_type=types.INTERP_CUBIC, antialias=True)
    if augment_policy_set(settings.auto_augment):
        images = rand_augment(images, str(settings.auto_augment), size=size)
    elif jitter:
        images = color_jitter(images, float(settings.color_jitter or 0.0))
    images = _normalize(images, settings, mirror=fn.random.coin_flip(probability=settings.hflip))
    if settings.reprob > 0:
        images = random_erasing(images, probability=settings.reprob, mode=settings.remode,
                                max_count=int(settings.recount), size=size)
    return images


def _normalize(images: Any, settings: DaliSettings, **crop_and_mirror: Any) -> Any:
    """0–255 HWC -> normalised float CHW (the settings' mean and std are in 0–1 units, as ours)."""
    from nvidia.dali import fn, types

    return fn.crop_mirror_normalize(images, dtype=types.FLOAT, output_layout="CHW",
                                    mean=[255.0 * float(value) for value in settings.mean],
                                    std=[255.0 * float(value) for value in settings.std], **crop_and_mirror)


def shard_samples(samples: Sequence[tuple[str, int]], *, shard_id: int, num_shards: int,
                  shuffle_seed: int | None) -> list[tuple[str, int]]:
    """One rank's samples: every `num_shards`-th of the `shuffle_seed` permutation (training), or a contiguous
    slice in order (`shuffle_seed=None`, evaluation); the ranks together hold every sample once."""
    if shuffle_seed is None:
        total = len(samples)
        return list(samples[total * shard_id // num_shards:total * (shard_id + 1) // num_shards])
    generator = torch.Generator()
    generator.manual_seed(shuffle_seed)  # as DistributedSampler: the order depends on seed + epoch alone
    order = torch.randperm(len(samples), generator=generator).tolist()
    return [samples[index] for index in order[shard_id::num_shards]]


def _augment_seed(seed: int, epoch: int, shard_id: int, num_shards: int) -> int:
    """A distinct augmentation seed per (rank, epoch), so a resumed epoch replays its crops and flips."""
    return (seed + shard_id + num_shards * epoch) % (2**31)


class DaliLoader:
    """Iterates one rank's shard as `(images (B,3,H,W) float, labels (B,) int64)` torch batches, epoch by epoch.

    Training builds the pipeline of the epoch given to `set_epoch` (as the torch loader's sampler: the order and
    augmentations follow from seed + epoch, so a resumed run continues as the uninterrupted one). The last batch
    of an epoch is trimmed to the shard's own images (DALI pads it by repetition), so the ranks together see
    every image exactly once per epoch.
    """

    def __init__(self, source: SampleSource, settings: DaliSettings, *, train: bool, batch_size: int,
                 shard_id: int = 0, num_shards: int = 1, device_id: int | None = None, num_threads: int = 2,
                 seed: int = 0, drop_last: bool = False) -> None:
        self.drop_last = drop_last  # training: full batches only (mixup pairs samples), as the torch loader
        self._build = dict(source=source, settings=settings, train=train, batch_size=batch_size, shard_id=shard_id,
                           num_shards=num_shards, device_id=device_id, num_threads=num_threads, seed=seed)
        self.train = train
        self.epoch = 0
        self._built_epoch: int | None = 0
        self.pipeline = build_pipeline(**self._build, epoch=0)  # type: ignore[arg-type]
        self.batch_size = batch_size
        self.shard_size = len(shard_samples(source.samples, shard_id=shard_id, num_shards=num_shards,
                                            shuffle_seed=0 if train else None))  # the same count every epoch
        self.classes = source.classes

    def __len__(self) -> int:
        if self.drop_last:
            return self.shard_size // self.batch_size
        return -(-self.shard_size // self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """The engine's sampler hook: the next pass reads epoch `epoch`'s order (seed + epoch)."""
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self.train and self._built_epoch != self.epoch:
            self.pipeline = build_pipeline(**self._build, epoch=self.epoch)  # type: ignore[arg-type]
            self._built_epoch = self.epoch
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


__all__ = ["DALI_EXTRA_HINT", "DaliLoader", "DaliSettings", "SampleSource", "build_pipeline", "check_dali_flags",
           "require_dali",
           "shard_samples"]
