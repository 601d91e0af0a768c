"""Streaming crop dataset: sources, crops at native size, aligned augmentation, bounded cache."""

from __future__ import annotations

import numpy as np
import pytest

from livecell_seg.errors import InputFileError
from livecell_seg.io import write_labels, write_tiff_atomic
from livecell_seg.training.config import AugmentConfig, SourceConfig
from livecell_seg.training.dataset import (
    CropDataset,
    FullImageDataset,
    extract_window,
    load_sample,
    resolve_sources,
)
from livecell_seg.training.targets import make_targets

torch = pytest.importorskip("torch")


def disks(h: int, w: int, n: int, seed: int) -> np.ndarray:
    """Instance labels with ``n`` non-overlapping-ish disks."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    labels = np.zeros((h, w), np.uint16)
    for i in range(1, n + 1):
        cy, cx, r = rng.integers(0, h), rng.integers(0, w), rng.integers(4, 9)
        labels[((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r) & (labels == 0)] = i
    return labels


def write_folder(root, n: int = 3, h: int = 72, w: int = 96, image_from_labels: bool = False):
    for i in range(n):
        lab = disks(h, w, 12, i)
        if image_from_labels:  # image == foreground (exactly 0/255): lets tests check alignment
            img = np.where(lab > 0, 255, 0).astype(np.uint8)
        else:
            img = (
                (np.random.default_rng(i).normal(120, 10, (h, w)) + 60 * (lab > 0))
                .clip(0, 255)
                .astype(np.uint8)
            )
        write_tiff_atomic(root / "images" / f"img_{i}.tif", img)
        write_labels(root / "labels" / f"img_{i}.tif", lab)
    return root


def test_folder_and_sample_sources_with_filters(tmp_path):
    write_folder(tmp_path / "conv", n=3)
    refs = resolve_sources([SourceConfig(folder=str(tmp_path / "conv"))])
    assert [r.name for r in refs] == ["img_0", "img_1", "img_2"]
    assert (
        resolve_sources([SourceConfig(folder=str(tmp_path / "conv"), exclude=["img_1"])])[1].name == "img_2"
    )
    sample = resolve_sources([SourceConfig(sample=True, include=["MCF7"])])
    assert len(sample) == 2 and all(r.name.startswith("MCF7") for r in sample)
    img, lab = load_sample(sample[0])
    assert img.shape == lab.shape == (520, 704) and img.dtype == np.float32 and lab.max() > 100
    both = resolve_sources(
        [SourceConfig(sample=True), SourceConfig(folder=str(tmp_path / "conv"))], max_images=6
    )
    assert len(both) == 6


def test_bad_sources_name_the_file(tmp_path):
    (tmp_path / "nolabels" / "images").mkdir(parents=True)
    with pytest.raises(InputFileError, match="nolabels.*labels/"):
        resolve_sources([SourceConfig(folder=str(tmp_path / "nolabels"))])
    (tmp_path / "nolabels" / "labels").mkdir()
    with pytest.raises(InputFileError, match="no image with a matching label"):
        resolve_sources([SourceConfig(folder=str(tmp_path / "nolabels"))])
    bad = tmp_path / "bad.json"
    bad.write_text("<html>not json</html>")
    with pytest.raises(InputFileError, match="bad.json"):
        resolve_sources([SourceConfig(json=str(bad), images=str(tmp_path))])


def test_extract_window_pads_outside():
    a = np.arange(12).reshape(3, 4)
    w = extract_window(a, -1, 2, 3, 3, -5)
    assert w.tolist() == [[-5, -5, -5], [2, 3, -5], [6, 7, -5]]


@pytest.mark.parametrize("head", ["fg", "fg+boundary", "fg+dist"])
def test_crops_shapes_padding_and_ranges(tmp_path, head):
    write_folder(tmp_path, n=2, h=40, w=50)  # smaller than the crop: padded
    refs = resolve_sources([SourceConfig(folder=str(tmp_path))])
    ds = CropDataset(refs, head, crop_size=64, samples_per_epoch=5)
    assert len(ds) == 5
    item = ds[3]
    c = {"fg": 1, "fg+boundary": 2, "fg+dist": 3}[head]
    assert item["image"].shape == (1, 64, 64) and item["target"].shape == (c, 64, 64)
    assert item["image"].dtype == torch.float32 and torch.isfinite(item["image"]).all()
    t = item["target"]
    assert float(t.min()) >= 0 and float(t.max()) <= 1
    assert 0 < float(t[0].mean()) < 1  # cells and background present


def test_geometric_augmentation_keeps_image_and_labels_aligned(tmp_path):
    write_folder(tmp_path, n=2, h=90, w=120, image_from_labels=True)
    refs = resolve_sources([SourceConfig(folder=str(tmp_path))])
    geo_only = AugmentConfig(strength=1.0, scale=0.25, p_scale=1.0, p_intensity=0.0)
    ds = CropDataset(refs, "fg", crop_size=64, augment=geo_only, samples_per_epoch=20)
    rng = np.random.default_rng(0)
    for i in range(20):
        image, target, _ = ds.sample(i, rng)
        agree = ((image > 0.5) == (target[0] > 0.5)).mean()
        assert agree > 0.97, (i, agree)  # only bilinear-vs-nearest edge pixels may differ
    no_scale = AugmentConfig(strength=1.0, p_scale=0.0, p_intensity=0.0)
    ds = CropDataset(refs, "fg", crop_size=64, augment=no_scale)
    for i in range(6):
        image, target, _ = ds.sample(i, rng)
        assert np.array_equal(image > 0.5, target[0] > 0.5)


def test_targets_computed_with_context_match_full_image_targets(tmp_path):
    """Without augmentation, a crop's targets equal the full image's targets cut to the crop,
    except for cells cut by the context window (margin) edge."""
    write_folder(tmp_path, n=1, h=120, w=160)
    refs = resolve_sources([SourceConfig(folder=str(tmp_path))])
    ds = CropDataset(refs, "fg+dist", crop_size=48, augment=AugmentConfig(strength=0.0), target_margin=40)
    img, lab = load_sample(refs[0])
    full = make_targets(lab, "fg+dist")
    image, target, _ = ds.sample(0, np.random.default_rng(3))
    # locate the crop in the image
    hits = [
        (y, x)
        for y in range(120 - 48 + 1)
        for x in range(160 - 48 + 1)
        if np.array_equal(img[y : y + 48, x : x + 48], image)
    ]
    assert len(hits) == 1
    y, x = hits[0]
    assert np.allclose(target, full[:, y : y + 48, x : x + 48], atol=1e-5)


def test_intensity_augmentation_changes_image_only(tmp_path):
    write_folder(tmp_path, n=1)
    refs = resolve_sources([SourceConfig(folder=str(tmp_path))])
    geo = {"flips": False, "rot90": False, "p_scale": 0.0, "p_intensity": 1.0}
    off = {"brightness": 0.0, "contrast": 0.0, "gamma": 0.0, "blur": 0.0, "noise": 0.0}
    plain = CropDataset(refs, "fg", crop_size=32, augment=AugmentConfig(**geo, **off))
    strong = CropDataset(refs, "fg", crop_size=32, augment=AugmentConfig(**geo))
    a_img, a_t, _ = plain.sample(0, np.random.default_rng(5))
    b_img, b_t, _ = strong.sample(0, np.random.default_rng(5))
    assert np.array_equal(a_t, b_t)
    assert not np.allclose(a_img, b_img)


def test_reproducible_under_torch_seed_and_bounded_cache(tmp_path):
    write_folder(tmp_path, n=6)
    refs = resolve_sources([SourceConfig(folder=str(tmp_path))])
    ds = CropDataset(refs, "fg+boundary", crop_size=32, cache_images=2, samples_per_epoch=12)
    torch.manual_seed(1)
    first = [ds[i]["image"] for i in range(12)]
    torch.manual_seed(1)
    second = [ds[i]["image"] for i in range(12)]
    assert all(torch.equal(a, b) for a, b in zip(first, second))
    assert len(ds.cache.items) == 2


def test_full_image_dataset(tmp_path):
    write_folder(tmp_path, n=2, h=50, w=70)
    refs = resolve_sources([SourceConfig(folder=str(tmp_path))])
    item = FullImageDataset(refs, "fg+dist")[1]
    assert item["image"].shape == (1, 50, 70) and item["target"].shape == (3, 50, 70)
    assert item["labels"].dtype == torch.int32 and item["name"] == "img_1"
