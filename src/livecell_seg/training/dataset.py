"""Streaming training/validation datasets: lazy per-sample reading, native-resolution crops,
augmentation of image and instance labels, targets computed on the fly.

Nothing is held in memory per dataset beyond a file list (and, for a COCO json source, each
image's polygons as one compact bytes blob), plus a small LRU of decoded images per worker, so
memory stays flat whatever the dataset size. numpy/scipy/scikit-image only; torch is imported
inside the dataset methods that return tensors.
"""

from __future__ import annotations

import pickle
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data.coco import cell_type_of, find_image, load_coco
from ..errors import InputFileError, LivecellError
from ..io import IMAGE_SUFFIXES, normalize_image, read_image, read_json, read_labels
from .config import AugmentConfig, SourceConfig
from .targets import make_targets

LABEL_SUFFIXES = ("", "_labels", "_label", "_masks", "_mask")


@dataclass(frozen=True)
class SampleRef:
    """Where one annotated image lives: an image file plus a label TIFF or pickled COCO polygons.

    ``source``: index of its data source; ``cell_type``: from ``cell_types.json`` or the LIVECell
    file name (``"unknown"`` otherwise); ``partial``: only some cells are annotated; ``ignore``:
    a mask file (nonzero = no loss there).
    """

    name: str
    image: str
    labels: str | None = None
    anns: bytes | None = None  # pickle of [segmentation, ...] (COCO json sources)
    height: int | None = None
    width: int | None = None
    source: int = 0
    cell_type: str = "unknown"
    partial: bool = False
    ignore: str | None = None


def _selected(name: str, include: Sequence[str] | None, exclude: Sequence[str] | None) -> bool:
    def hit(patterns: Sequence[str]) -> bool:
        return any(name == p or name.startswith(p) for p in patterns)

    if include is not None and not hit(include):
        return False
    return not (exclude and hit(exclude))


def _folder_refs(folder: Path) -> list[SampleRef]:
    img_dir, lab_dir = folder / "images", folder / "labels"
    for d in (img_dir, lab_dir):
        if not d.is_dir():
            raise InputFileError(folder, f"not a converted folder (no {d.name}/ inside)")
    labels: dict[str, Path] = {}
    for p in sorted(lab_dir.rglob("*")):
        if p.is_file() and p.suffix.lower() in (".tif", ".tiff", ".png"):
            labels.setdefault(p.stem, p)
    refs = []
    for p in sorted(img_dir.rglob("*")):
        if not (p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES):
            continue
        lab = next((labels[p.stem + s] for s in LABEL_SUFFIXES if p.stem + s in labels), None)
        if lab is not None:
            refs.append(SampleRef(name=p.stem, image=str(p), labels=str(lab)))
    return refs


def _labels_refs(labels_dir: Path, images_dir: Path) -> list[SampleRef]:

    if not labels_dir.is_dir():
        raise InputFileError(labels_dir, "labels folder not found")
    refs = []
    for p in sorted(labels_dir.iterdir()):
        if p.is_file() and p.suffix.lower() in (".tif", ".tiff") and not p.name.startswith("."):
            refs.append(
                SampleRef(name=p.stem, image=str(find_image(images_dir, p.stem + ".tif")), labels=str(p))
            )
    if not refs:
        raise InputFileError(labels_dir, "no label TIFFs in the labels folder")
    return refs


def _json_refs(json_path: Path, images_dir: Path) -> list[SampleRef]:

    coco = load_coco(json_path)
    refs = []
    for im in coco.images:
        anns = coco.anns_by_image.get(int(im["id"]), [])
        segs = [a.get("segmentation") for a in anns]
        refs.append(
            SampleRef(
                name=Path(im["file_name"]).stem,
                image=str(find_image(images_dir, im["file_name"])),
                anns=pickle.dumps(segs, protocol=pickle.HIGHEST_PROTOCOL),
                height=int(im["height"]),
                width=int(im["width"]),
            )
        )
    return refs


def _cell_types(src: SourceConfig) -> dict[str, str]:
    """Stem -> cell type from the source's ``cell_types`` json (or a folder's ``cell_types.json``)."""

    path = Path(src.cell_types) if src.cell_types else None
    if path is None and src.folder is not None and (Path(src.folder) / "cell_types.json").is_file():
        path = Path(src.folder) / "cell_types.json"
    if path is None:
        return {}
    data = read_json(path)
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise InputFileError(path, "expected a JSON object mapping image names to cell types")
    return {Path(str(k)).stem: v for k, v in data.items()}


def _ignore_dir(src: SourceConfig) -> Path | None:
    if src.ignore is not None:
        d = Path(src.ignore)
        if not d.is_dir():
            raise InputFileError(d, "ignore-mask folder not found")
        return d
    if src.folder is not None and (Path(src.folder) / "ignore").is_dir():
        return Path(src.folder) / "ignore"
    return None


def _annotate(
    ref: SampleRef, index: int, src: SourceConfig, types: dict[str, str], ignore: Path | None
) -> SampleRef:
    import dataclasses

    mask = None
    if ignore is not None:
        mask = next(
            (
                ignore / (ref.name + s)
                for s in (".tif", ".tiff", ".png")
                if (ignore / (ref.name + s)).is_file()
            ),
            None,
        )
    return dataclasses.replace(
        ref,
        source=index,
        cell_type=types.get(ref.name) or cell_type_of(ref.name + ".tif"),
        partial=src.annotation == "partial",
        ignore=str(mask) if mask is not None else None,
    )


def resolve_sources(sources: Sequence[SourceConfig], max_images: int | None = None) -> list[SampleRef]:
    """List the annotated images of ``sources`` (filtered by include/exclude), in a stable order.

    Each :class:`SampleRef` carries its source index, cell type, annotation policy and ignore mask.
    """
    refs: list[SampleRef] = []
    for index, src in enumerate(sources):
        if src.sample:
            from ..data import sample_paths

            js, imgs = sample_paths()
            found = _json_refs(js, imgs)
        elif src.labels is not None:
            found = _labels_refs(Path(src.labels), Path(src.images))  # type: ignore[arg-type]
        elif src.folder is not None:
            found = _folder_refs(Path(src.folder))
            if not found:
                raise InputFileError(src.folder, "no image with a matching label file (images/, labels/)")
        else:
            found = _json_refs(Path(src.json), Path(src.images))  # type: ignore[arg-type]
        types, ignore = _cell_types(src), _ignore_dir(src)
        kept = [
            _annotate(r, index, src, types, ignore)
            for r in found
            if _selected(r.name, src.include, src.exclude)
        ]
        if src.include_types is not None:
            kept = [r for r in kept if r.cell_type in src.include_types]
        refs.extend(kept)
    if max_images is not None:
        refs = refs[:max_images]
    return refs


def load_sample(ref: SampleRef) -> tuple[np.ndarray, np.ndarray]:
    """(normalized float32 image, int32 instance labels) of one sample; shapes must agree."""
    img = normalize_image(read_image(ref.image))
    if ref.labels is not None:
        labels = read_labels(ref.labels).astype(np.int32, copy=False)
    else:
        from ..data.coco import annotations_to_labels

        segs = pickle.loads(ref.anns or pickle.dumps([]))
        h, w = (ref.height, ref.width) if ref.height else img.shape
        labels = annotations_to_labels([{"segmentation": s} for s in segs], h, w).astype(np.int32)
    if labels.shape != img.shape:
        raise InputFileError(
            ref.labels or ref.image, f"labels {labels.shape} and image {img.shape} differ in size"
        )
    return img, labels


def load_ignore(ref: SampleRef, shape: tuple[int, ...]) -> np.ndarray | None:
    """The sample's ignore mask (bool, True = no loss there), or None when it has none."""
    if ref.ignore is None:
        return None
    mask = read_labels(ref.ignore) != 0
    if mask.shape != tuple(shape):
        raise InputFileError(ref.ignore, f"ignore mask {mask.shape} and image {tuple(shape)} differ in size")
    return mask


Loaded = tuple[np.ndarray, np.ndarray, np.ndarray | None]  # image, labels, ignore mask


class _LRU:
    """A tiny least-recently-used cache of decoded samples (per dataset copy, i.e. per worker)."""

    def __init__(self, size: int) -> None:
        self.size = max(0, int(size))
        self.items: OrderedDict[int, Loaded] = OrderedDict()

    def get(self, key: int, refs: Sequence[SampleRef]) -> Loaded:
        if key in self.items:
            self.items.move_to_end(key)
            return self.items[key]
        img, labels = load_sample(refs[key])
        value = (img, labels, load_ignore(refs[key], img.shape))
        if self.size:
            self.items[key] = value
            while len(self.items) > self.size:
                self.items.popitem(last=False)
        return value


def sampling_probabilities(
    refs: Sequence[SampleRef], weights: Sequence[float | None] = (), balance: str = "none"
) -> np.ndarray | None:
    """Probability of drawing each ref for a training crop, or None for "every image equally often".

    A source's share is its weight relative to the others' (a source without a weight gets 1 when
    any source has one); with ``balance="cell_type"`` every cell type within a source gets an equal
    part of the source's share, split equally among its images.
    """
    if not refs:
        return None
    n_sources = max(r.source for r in refs) + 1
    given = list(weights) + [None] * (n_sources - len(weights))
    if all(w is None for w in given) and balance == "none":
        return None
    per_source = [r.source for r in refs]
    counts = np.bincount(per_source, minlength=n_sources).astype(np.float64)
    if all(w is None for w in given):  # balance only: sources keep their size-proportional share
        share = counts / counts.sum()
    else:
        share = np.array([1.0 if w is None else float(w) for w in given])
        share = np.where(counts > 0, share, 0.0)
        share = share / share.sum()
    p = np.zeros(len(refs))
    for s in range(n_sources):
        idx = [i for i, r in enumerate(refs) if r.source == s]
        if not idx:
            continue
        if balance == "cell_type":
            types = sorted({refs[i].cell_type for i in idx})
            for t in types:
                members = [i for i in idx if refs[i].cell_type == t]
                p[members] = share[s] / len(types) / len(members)
        else:
            p[idx] = share[s] / len(idx)
    return p / p.sum()


# --------------------------------------------------------------------------------------------------
# augmentation (numpy / scipy)
# --------------------------------------------------------------------------------------------------


def extract_window(arr: np.ndarray, y0: int, x0: int, h: int, w: int, fill: float) -> np.ndarray:
    """``arr[y0:y0+h, x0:x0+w]`` where parts outside ``arr`` are filled with ``fill``."""
    H, W = arr.shape
    out = np.full((h, w), fill, dtype=arr.dtype)
    sy0, sx0 = max(y0, 0), max(x0, 0)
    sy1, sx1 = min(y0 + h, H), min(x0 + w, W)
    if sy1 > sy0 and sx1 > sx0:
        out[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = arr[sy0:sy1, sx0:sx1]
    return out


def _resize(arr: np.ndarray, size: int, order: int) -> np.ndarray:
    from skimage.transform import resize

    if arr.shape == (size, size):
        return arr
    out = resize(arr, (size, size), order=order, preserve_range=True, anti_aliasing=False, mode="edge")
    return out.astype(arr.dtype, copy=False)


def random_window(
    img: np.ndarray,
    labels: np.ndarray,
    crop: int,
    margin: int,
    scale: float,
    rng: np.random.Generator,
    mask: np.ndarray | None = None,
) -> tuple[np.ndarray, ...]:
    """A random (crop + 2·margin)² window of image and labels, zoomed by ``scale``.

    The inner ``crop``² lies inside the image when the image is big enough (else it is padded:
    image with its median, labels with background). Labels are resized nearest-neighbour.
    With a boolean ``mask`` (same shape), its window is returned third (nearest-neighbour too).
    """
    H, W = img.shape
    inner = max(1, int(round(crop / scale)))
    m = int(round(margin / scale))

    def start(n: int) -> int:
        return int(rng.integers(0, n - inner + 1)) if n >= inner else -int(rng.integers(0, inner - n + 1))

    y0, x0 = start(H) - m, start(W) - m
    size = inner + 2 * m
    inside = y0 >= 0 and x0 >= 0 and y0 + size <= H and x0 + size <= W
    fill = 0.0 if inside else float(np.median(img))  # the median (a full sort) only when padding
    win_img = extract_window(img, y0, x0, size, size, fill)
    win_lab = extract_window(labels, y0, x0, size, size, 0)
    out = crop + 2 * margin
    if mask is None:
        return _resize(win_img, out, 1), _resize(win_lab, out, 0)
    win_mask = extract_window(mask.astype(np.uint8), y0, x0, size, size, 0)
    return _resize(win_img, out, 1), _resize(win_lab, out, 0), _resize(win_mask, out, 0) > 0


def geometric_flips(
    img: np.ndarray, labels: np.ndarray, aug: AugmentConfig, rng: np.random.Generator, *more: np.ndarray
) -> tuple[np.ndarray, ...]:
    """Random horizontal/vertical flips and 90° rotations, identical for image, labels and ``more``."""
    arrays = (img, labels, *more)
    if aug.strength <= 0:
        return arrays
    if aug.flips:
        if rng.random() < 0.5:
            arrays = tuple(a[:, ::-1] for a in arrays)
        if rng.random() < 0.5:
            arrays = tuple(a[::-1] for a in arrays)
    if aug.rot90:
        k = int(rng.integers(0, 4))
        if k:
            arrays = tuple(np.rot90(a, k) for a in arrays)
    return tuple(np.ascontiguousarray(a) for a in arrays)


def loss_weight(labels: np.ndarray, ignore: np.ndarray | None, partial_margin: int | None) -> np.ndarray:
    """Per-pixel loss weight (float32, 1 = counts, 0 = ignored) of a label window.

    ``ignore`` pixels get 0; with ``partial_margin`` (a partially annotated image) so does every
    background pixel farther than that many pixels from an annotated cell, because an unannotated
    cell may sit there.
    """
    w = np.ones(labels.shape, np.float32)
    if partial_margin is not None:
        from scipy.ndimage import distance_transform_edt

        fg = labels > 0
        if fg.any():
            w[distance_transform_edt(~fg) > partial_margin] = 0.0
        else:
            w[:] = 0.0
    if ignore is not None:
        w[ignore] = 0.0
    return w


def intensity_augment(img: np.ndarray, aug: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """Brightness, contrast, gamma, Gaussian blur and noise on a normalized image (float32)."""
    s = aug.strength
    if s <= 0:
        return img
    x = img.astype(np.float32, copy=True)
    p = aug.p_intensity
    if aug.brightness > 0 and rng.random() < p:
        x += rng.uniform(-1, 1) * aug.brightness * s
    if aug.contrast > 0 and rng.random() < p:
        mean = float(x.mean())
        x = (x - mean) * (1 + rng.uniform(-1, 1) * aug.contrast * s) + mean
    if aug.gamma > 0 and rng.random() < p:
        g = max(0.1, 1 + rng.uniform(-1, 1) * aug.gamma * s)
        pos = np.clip(x, 0, None)
        x = np.minimum(x, 0) + pos**g
    if aug.blur > 0 and rng.random() < p:
        from scipy.ndimage import gaussian_filter

        sigma = rng.uniform(0, aug.blur * s)
        if sigma > 0.1:
            x = gaussian_filter(x, sigma)
    if aug.noise > 0 and rng.random() < p:
        x += rng.normal(0, rng.uniform(0, aug.noise * s), x.shape).astype(np.float32)
    return x.astype(np.float32, copy=False)


# --------------------------------------------------------------------------------------------------
# datasets
# --------------------------------------------------------------------------------------------------


class CropDataset:
    """Random augmented crops for training (a ``torch.utils.data.Dataset``-compatible class).

    Item ``i`` is a crop of image ``i % n_images``, or of an image drawn with ``probabilities``
    (see :func:`sampling_probabilities`) when given: ``{"image": (1, S, S), "target": (C, S, S),
    "weight": (S, S)}`` float32 tensors, S = ``crop_size``; ``weight`` is the per-pixel loss weight
    (:func:`loss_weight`: 0 on ignore masks and, for partially annotated images, on background far
    from annotated cells). ``samples_per_epoch`` sets the length (default: one crop per image), so
    tiny datasets still give full epochs. The augmentation's randomness comes from torch's RNG, so
    it is reproducible under ``seed_everything`` and differs per worker and epoch.
    """

    def __init__(
        self,
        refs: Sequence[SampleRef],
        head: str,
        crop_size: int = 256,
        augment: AugmentConfig | None = None,
        samples_per_epoch: int | None = None,
        target_margin: int = 32,
        boundary_width: int = 1,
        cache_images: int = 4,
        probabilities: np.ndarray | None = None,
        partial_margin: int = 12,
    ) -> None:
        if not refs:
            raise LivecellError("no training images")
        self.refs = list(refs)
        self.head = head
        self.crop = int(crop_size)
        self.aug = augment or AugmentConfig()
        self.length = int(samples_per_epoch) if samples_per_epoch else len(self.refs)
        self.margin = max(0, int(target_margin))
        self.boundary_width = boundary_width
        self.cache = _LRU(cache_images)
        if probabilities is not None and len(probabilities) != len(self.refs):
            raise ValueError("probabilities: one per ref")
        self.cumulative = None if probabilities is None else np.cumsum(probabilities) / np.sum(probabilities)
        self.partial_margin = int(partial_margin)

    def __len__(self) -> int:
        return self.length

    def _zoom(self, rng: np.random.Generator) -> float:
        a = self.aug
        if a.scale_range is not None:
            lo, hi = (float(v) ** a.strength for v in a.scale_range)
        else:
            lo, hi = 1 - a.scale * a.strength, 1 + a.scale * a.strength
        if a.strength <= 0 or lo == hi or rng.random() >= a.p_scale:
            return 1.0
        return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))

    def pick(self, index: int, rng: np.random.Generator) -> int:
        """Index of the image that item ``index`` is cropped from."""
        if self.cumulative is None:
            return index % len(self.refs)
        return int(min(np.searchsorted(self.cumulative, rng.random(), side="right"), len(self.refs) - 1))

    def sample(self, index: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(image (S, S), targets (C, S, S), loss weight (S, S)), float32, for item ``index`` drawn with ``rng``."""
        i = self.pick(index, rng)
        img, labels, ignore = self.cache.get(i, self.refs)
        a = self.aug
        scale = self._zoom(rng)
        wins = random_window(img, labels, self.crop, self.margin, scale, rng, mask=ignore)
        wins = geometric_flips(*wins[:2], a, rng, *wins[2:])
        win_img, win_lab = wins[0], wins[1]
        win_ign = wins[2] if len(wins) > 2 else None
        targets = make_targets(win_lab, self.head, self.boundary_width)
        weight = loss_weight(win_lab, win_ign, self.partial_margin if self.refs[i].partial else None)
        m, c = self.margin, self.crop
        image = intensity_augment(win_img[m : m + c, m : m + c], a, rng)
        return (
            image,
            np.ascontiguousarray(targets[:, m : m + c, m : m + c]),
            np.ascontiguousarray(weight[m : m + c, m : m + c]),
        )

    def __getitem__(self, index: int) -> dict:
        import torch

        seed = int(torch.randint(0, 2**62, (1,)).item())
        image, targets, weight = self.sample(index, np.random.default_rng(seed))
        return {
            "image": torch.from_numpy(image[None]),
            "target": torch.from_numpy(targets),
            "weight": torch.from_numpy(weight),
        }


class FullImageDataset:
    """Whole images at native size for validation: ``{"image": (1, H, W), "target": (C, H, W),
    "labels": (H, W) int32, "name": str}``. Use batch size 1 (sizes may differ)."""

    def __init__(self, refs: Sequence[SampleRef], head: str, boundary_width: int = 1) -> None:
        self.refs = list(refs)
        self.head = head
        self.boundary_width = boundary_width

    def __len__(self) -> int:
        return len(self.refs)

    def __getitem__(self, index: int) -> dict:
        import torch

        ref = self.refs[index]
        img, labels = load_sample(ref)
        targets = make_targets(labels, self.head, self.boundary_width)
        return {
            "image": torch.from_numpy(img[None]),
            "target": torch.from_numpy(targets),
            "labels": torch.from_numpy(labels.astype(np.int32, copy=False)),
            "name": ref.name,
        }
