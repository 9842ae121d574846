"""RepeatAugSampler (official RASampler semantics) and build_mixup."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from deit.data import RepeatAugSampler, build_mixup
from deit.errors import DeitError


def _full_order(size: int, replicas: int, epoch: int = 0) -> list[list[int]]:
    samplers = [RepeatAugSampler(range(size), num_replicas=replicas, rank=rank) for rank in range(replicas)]
    for sampler in samplers:
        sampler.set_epoch(epoch)
        sampler.num_selected_samples = sampler.num_samples  # look past the per-epoch cut
    return [list(sampler) for sampler in samplers]


def test_every_index_appears_num_repeats_times_across_replicas():
    parts = _full_order(1000, 4)
    counts = Counter(index for part in parts for index in part)
    assert set(counts) == set(range(1000)) and set(counts.values()) == {3}
    # the three copies of one image go to three different replicas (so they get different augmentations)
    first = parts[0][0]
    assert [part[0] for part in parts[:3]] == [first] * 3 and parts[3][0] != first


def test_epoch_length_is_rounded_as_official():
    assert len(RepeatAugSampler(range(1000), num_replicas=4, rank=3)) == 1000 // 256 * 256 // 4 == 192
    assert len(list(RepeatAugSampler(range(1000), num_replicas=4, rank=3))) == 192
    single = RepeatAugSampler(range(1437))
    assert len(single) == 1280 and len(list(single)) == 1280
    small = RepeatAugSampler(range(100), num_replicas=3, rank=2)  # official rounding would give 0
    assert len(small) == len(list(small)) == 34


def test_single_process_keeps_copies_adjacent_and_reshuffles_per_epoch():
    sampler = RepeatAugSampler(range(300), seed=7)
    order = list(sampler)
    assert all(order[i] == order[i + 1] == order[i + 2] for i in range(0, len(order) - 2, 3))
    assert list(sampler) == order  # same epoch: same order
    sampler.set_epoch(1)
    assert list(sampler) != order
    assert list(RepeatAugSampler(range(300), seed=8)) != order
    unshuffled = list(RepeatAugSampler(range(300), shuffle=False))
    assert unshuffled[:6] == [0, 0, 0, 1, 1, 1]


def test_resumed_epoch_draws_the_same_order_and_seed_zero_is_the_official_one():
    trained = RepeatAugSampler(range(300), seed=5)
    for epoch in range(3):
        trained.set_epoch(epoch)
        before_resume = list(trained)
    resumed = RepeatAugSampler(range(300), seed=5)
    resumed.set_epoch(2)
    assert list(resumed) == before_resume
    # official RASampler: torch.randperm seeded by the epoch, each index repeated in place
    official = torch.randperm(300, generator=torch.Generator().manual_seed(4)).repeat_interleave(3)
    official_sampler = RepeatAugSampler(range(300), seed=0)
    official_sampler.set_epoch(4)
    assert list(official_sampler) == official[: len(official_sampler)].tolist()


def test_drives_a_data_loader():
    dataset = TensorDataset(torch.arange(50))
    loader = DataLoader(dataset, batch_size=8, sampler=RepeatAugSampler(dataset, num_repeats=2))
    seen = torch.cat([batch[0] for batch in loader])
    assert len(seen) == 50 and Counter(seen.tolist()).most_common(1)[0][1] == 2


def test_sampler_rejects_bad_arguments():
    with pytest.raises(DeitError):
        RepeatAugSampler(range(10), num_replicas=2, rank=2)
    with pytest.raises(DeitError):
        RepeatAugSampler(range(10), num_repeats=0)
    with pytest.raises(DeitError):
        RepeatAugSampler([], num_replicas=1)


def test_mixup_off_is_none_and_on_mixes_with_smoothing():
    assert build_mixup(mixup=0.0, cutmix=0.0, num_classes=10) is None
    assert build_mixup(mixup=0.0, cutmix=0.0, cutmix_minmax=(0.2, 0.8), num_classes=10) is not None
    mix = build_mixup(mixup=0.8, cutmix=1.0, label_smoothing=0.1, num_classes=10)
    images, labels = torch.rand(6, 3, 16, 16), torch.tensor([0, 1, 2, 3, 4, 5])
    mixed, targets = mix(images.clone(), labels)
    assert mixed.shape == images.shape and targets.shape == (6, 10)
    assert torch.allclose(targets.sum(1), torch.ones(6))
    assert targets.min() == pytest.approx(0.01)  # smoothing 0.1 spread over 10 classes
    assert (targets > 0.02).sum(1).ge(1).all()
    only_mixup = build_mixup(mixup=0.8, cutmix=0.0, label_smoothing=0.0, num_classes=6)
    mixed, targets = only_mixup(images.clone(), labels)
    # mixup blends each image with the batch reversed, by the weight on its own label
    own = targets[0, 0]
    assert torch.allclose(mixed[0], own * images[0] + (1 - own) * images[5], atol=1e-5)


def test_mixup_rejects_bad_settings():
    with pytest.raises(DeitError, match="--mixup-mode"):
        build_mixup(mixup=0.8, cutmix=1.0, mode="rows", num_classes=10)
    with pytest.raises(DeitError, match="--smoothing"):
        build_mixup(mixup=0.8, cutmix=1.0, label_smoothing=1.5, num_classes=10)
    with pytest.raises(DeitError, match="--cutmix-minmax"):
        build_mixup(mixup=0.0, cutmix=0.0, cutmix_minmax=(0.9, 0.1), num_classes=10)
