"""Exploratory data analysis of LIVECell-format annotations: one self-contained HTML report.

``make_report(json_paths, out_dir, images_dir=None)`` streams the images and their annotations one
at a time (never all masks or all polygons at once) and writes ``out_dir/index.html`` (plots embedded
as base64 PNG) and ``out_dir/stats.json``. The report shows images, wells and cells per cell type and
split; cells per image; the cell area distribution per cell type on a log scale with LIVECell's
small/medium/large limits (324 and 961 px²); overlap between annotations (rasterized per image like
pycocotools); duplicate images; and, when ``images_dir`` is given, intensity statistics per cell type
and example images with their outlines.

The jsons are streamed (``convert.scan_coco``): what is kept per cell is three numbers (area,
overlapped pixels, mask pixels). matplotlib (Agg backend) is imported only when rendering.
"""

from __future__ import annotations

import hashlib
import html
import logging
import os
import re
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputFileError, LivecellError
from ..io import atomic_path, read_image, write_json_atomic
from ..progress import Progress, progress_bar
from ..reports import CSS, figure_png, format_number, html_table, img_tag
from .coco import _rasterize_one, _seg_key, cell_type_of, find_image, polygon_parts
from .convert import read_run, scan_coco
from .splits import DuplicateImage, ImageCopy, _seg_signature, group_of

#: LIVECell / COCO evaluation area limits in px²: small < 324 <= medium < 961 <= large
SIZE_LIMITS = (324.0, 961.0)
#: colours of the splits in every plot (other sources get the next tab10 colours)
SPLIT_COLORS = {"train": "#1f77b4", "val": "#ff7f0e", "test": "#2ca02c"}


# --------------------------------------------------------------------------------------------------
# statistics (streamed)
# --------------------------------------------------------------------------------------------------
@dataclass
class ImageRecord:
    """Annotation statistics of one image (small: a few numbers per cell)."""

    file_name: str
    cell_type: str
    split: str
    group: str
    n_annotations: int
    areas: np.ndarray  #: float32, area of each rasterizable annotation (its ``area`` field, else pixels)
    overlap_px: np.ndarray  #: uint32, pixels of each annotation also covered by another annotation
    mask_px: np.ndarray  #: uint32, rasterized pixels of each annotation
    degenerate: int = 0  #: annotations that rasterize to nothing
    duplicate_contours: int = 0  #: annotations whose contour repeats an earlier one of the image
    foreground_px: int = 0  #: pixels covered by at least one annotation
    multi_px: int = 0  #: pixels covered by two or more annotations


@dataclass
class IntensityAccumulator:
    """Streaming intensity statistics of one cell type: exact histogram of integer grey values."""

    hist: np.ndarray = field(default_factory=lambda: np.zeros(256, dtype=np.int64))
    fg_sum: float = 0.0
    fg_n: int = 0
    bg_sum: float = 0.0
    bg_n: int = 0
    image_means: list[float] = field(default_factory=list)
    image_stds: list[float] = field(default_factory=list)
    dtypes: set[str] = field(default_factory=set)

    def add(self, img: np.ndarray, foreground: np.ndarray | None) -> None:
        """Add one image (2-D) and, optionally, its foreground mask (pixels inside any cell)."""
        self.dtypes.add(str(img.dtype))
        vals = img if np.issubdtype(img.dtype, np.integer) else np.rint(img)
        vals = np.clip(vals, 0, 65535).astype(np.int64, copy=False).ravel()
        h = np.bincount(vals, minlength=self.hist.size)
        if h.size > self.hist.size:
            self.hist = np.concatenate([self.hist, np.zeros(h.size - self.hist.size, dtype=np.int64)])
        self.hist[: h.size] += h
        x = img.astype(np.float64, copy=False)
        self.image_means.append(float(x.mean()))
        self.image_stds.append(float(x.std()))
        if foreground is not None:
            n_fg = int(foreground.sum())
            s_fg = float(x[foreground].sum()) if n_fg else 0.0
            self.fg_sum += s_fg
            self.fg_n += n_fg
            self.bg_sum += float(x.sum()) - s_fg
            self.bg_n += x.size - n_fg

    def summary(self) -> dict[str, float]:
        """Pixels, mean, std, percentiles (1, 5, 50, 95, 99) and mean inside/outside cells."""
        n = int(self.hist.sum())
        if n == 0:
            return {}
        v = np.arange(self.hist.size, dtype=np.float64)
        mean = float((self.hist * v).sum() / n)
        std = float(np.sqrt(max(0.0, (self.hist * (v - mean) ** 2).sum() / n)))
        cum = np.cumsum(self.hist)
        pct = {f"p{q}": float(np.searchsorted(cum, q / 100 * n, side="left")) for q in (1, 5, 50, 95, 99)}
        return {
            "images": len(self.image_means),
            "pixels": n,
            "mean": mean,
            "std": std,
            **pct,
            "mean_in_cells": self.fg_sum / self.fg_n if self.fg_n else float("nan"),
            "mean_background": self.bg_sum / self.bg_n if self.bg_n else float("nan"),
        }


@dataclass
class Example:
    """An example image kept for the outline figure."""

    file_name: str
    cell_type: str
    split: str
    image: np.ndarray
    polygons: list[np.ndarray]  #: (n, 2) x/y vertices of each annotation part


@dataclass
class EdaStats:
    """Everything the report shows, gathered in one streaming pass."""

    sources: dict[str, str]  #: split label -> json path
    records: dict[str, ImageRecord]  #: file name -> its statistics (one per unique image)
    duplicates: list[DuplicateImage]
    intensity: dict[str, IntensityAccumulator]
    images_dir: str | None = None
    missing_images: list[str] = field(default_factory=list)
    unreadable_images: list[str] = field(default_factory=list)
    size_mismatch: list[str] = field(default_factory=list)
    examples: dict[str, Example] = field(default_factory=dict)  #: cell type -> example
    orphan_annotations: int = 0
    seconds: float = 0.0

    @property
    def cell_types(self) -> list[str]:
        """Cell types present, sorted."""
        return sorted({r.cell_type for r in self.records.values()})

    @property
    def splits(self) -> list[str]:
        """Split labels, in the order the jsons were given."""
        return list(self.sources)

    def table(self) -> list[dict[str, Any]]:
        """Images, wells, cells and cells per image per (cell type, split)."""
        acc: dict[tuple[str, str], list] = {}
        for r in self.records.values():
            a = acc.setdefault((r.cell_type, r.split), [0, set(), 0])
            a[0] += 1
            a[1].add(r.group)
            a[2] += r.n_annotations
        rows = []
        for ct in self.cell_types:
            for s in self.splits:
                n, wells, cells = acc.get((ct, s), [0, set(), 0])
                rows.append(
                    {
                        "cell_type": ct,
                        "split": s,
                        "images": n,
                        "wells": len(wells),
                        "cells": cells,
                        "cells_per_image": cells / n if n else 0.0,
                    }
                )
        return rows

    def shared_groups(self) -> dict[str, list[str]]:
        """Wells (groups) whose images are in more than one split: leakage between splits."""
        where: dict[str, set[str]] = defaultdict(set)
        for r in self.records.values():
            where[r.group].add(r.split)
        return {g: sorted(s, key=self.splits.index) for g, s in sorted(where.items()) if len(s) > 1}

    def area_summary(self) -> list[dict[str, Any]]:
        """Per cell type: cells, median / 5th / 95th percentile area, share small / medium / large."""
        out = []
        for ct in [*self.cell_types, "all"]:
            a = self._areas(None if ct == "all" else ct)
            if a.size == 0:
                continue
            small = float((a < SIZE_LIMITS[0]).mean())
            large = float((a >= SIZE_LIMITS[1]).mean())
            p5, p50, p95 = np.percentile(a, [5, 50, 95])
            out.append(
                {
                    "cell_type": ct,
                    "cells": int(a.size),
                    "p5": float(p5),
                    "median": float(p50),
                    "p95": float(p95),
                    "small": small,
                    "medium": 1.0 - small - large,
                    "large": large,
                }
            )
        return out

    def overlap_summary(self) -> list[dict[str, Any]]:
        """Per cell type: share of cells overlapping another, overlap area, likely duplicate contours."""
        out = []
        for ct in [*self.cell_types, "all"]:
            recs = [r for r in self.records.values() if ct in ("all", r.cell_type)]
            ov = np.concatenate([r.overlap_px for r in recs]) if recs else np.zeros(0)
            px = np.concatenate([r.mask_px for r in recs]) if recs else np.zeros(0)
            if ov.size == 0:
                continue
            frac = ov / np.maximum(px, 1)
            hit = ov > 0
            fg = sum(r.foreground_px for r in recs)
            out.append(
                {
                    "cell_type": ct,
                    "cells": int(ov.size),
                    "overlapping": float(hit.mean()),
                    "median_overlap_px": float(np.median(ov[hit])) if hit.any() else 0.0,
                    "median_overlap_fraction": float(np.median(frac[hit])) if hit.any() else 0.0,
                    "mostly_covered": int((frac > 0.5).sum()),
                    "multi_px_share": sum(r.multi_px for r in recs) / fg if fg else 0.0,
                    "duplicate_contours": sum(r.duplicate_contours for r in recs),
                    "degenerate": sum(r.degenerate for r in recs),
                }
            )
        return out

    def _areas(self, cell_type: str | None) -> np.ndarray:
        parts = [r.areas for r in self.records.values() if cell_type in (None, r.cell_type)]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)

    def to_dict(self) -> dict[str, Any]:
        """The numbers of the report as a JSON-friendly dict (written as ``stats.json``)."""
        cpi = np.array([r.n_annotations for r in self.records.values()])
        fewest = sorted(self.records.values(), key=lambda r: (r.n_annotations, r.file_name))[:10]
        return {
            "sources": self.sources,
            "images": len(self.records),
            "cells": int(cpi.sum()) if cpi.size else 0,
            "cells_per_image": {
                "mean": float(cpi.mean()) if cpi.size else 0.0,
                "median": float(np.median(cpi)) if cpi.size else 0.0,
                "min": int(cpi.min()) if cpi.size else 0,
                "max": int(cpi.max()) if cpi.size else 0,
            },
            "fewest_cells": [{"file_name": r.file_name, "cells": r.n_annotations} for r in fewest],
            "table": self.table(),
            "areas": self.area_summary(),
            "overlap": self.overlap_summary(),
            "intensity": {ct: acc.summary() for ct, acc in sorted(self.intensity.items())},
            "duplicates": [d.as_dict() for d in self.duplicates],
            "shared_groups": self.shared_groups(),
            "images_dir": self.images_dir,
            "missing_images": self.missing_images,
            "unreadable_images": self.unreadable_images,
            "size_mismatch": self.size_mismatch,
            "orphan_annotations": self.orphan_annotations,
            "seconds": self.seconds,
        }


def split_label(path: str | os.PathLike[str], taken: Sequence[str] = ()) -> str:
    """A short split name for a json file: train / val / test when the name says so, else its stem."""
    stem = Path(path).name
    for suffix in (".json", ".gz"):
        stem = stem.removesuffix(suffix)
    m = re.search(r"(?:^|[^a-z])(train|val|test)(?:[^a-z]|$)", stem.lower()) or re.search(
        r"(train|val|test)", stem.lower()
    )
    label = m.group(1) if m else stem
    if label in taken:
        label = stem
    base, i = label, 2
    while label in taken:
        label = f"{base}-{i}"
        i += 1
    return label


def _image_record(
    anns: list[dict], height: int, width: int, **meta: Any
) -> tuple[ImageRecord, np.ndarray, list]:
    """Rasterize one image's annotations (bounding-box crops, one at a time) and measure overlaps.

    Returns (record, coverage count map (uint8), outline polygons).
    """
    count = np.zeros((height, width), dtype=np.uint8)
    crops: list[tuple[np.ndarray, int, int]] = []
    areas: list[float] = []
    polys: list[np.ndarray] = []
    seen: set = set()
    degenerate = dup = 0
    for a in anns:
        seg = a.get("segmentation")
        if isinstance(seg, list):
            key = _seg_key(seg)
            if key is not None:
                dup += key in seen
                seen.add(key)
            polys.extend(a.reshape(-1, 2).astype(np.float32) for a in polygon_parts(seg, height, width) or [])
        r = _rasterize_one(a, height, width)
        if r is None:
            degenerate += 1
            continue
        m, y0, x0 = r
        c = count[y0 : y0 + m.shape[0], x0 : x0 + m.shape[1]]
        c[m] = np.minimum(c[m], 254) + 1
        crops.append(r)
        area = a.get("area")
        ok = isinstance(area, (int, float)) and not isinstance(area, bool) and 0 < area < 1e12
        areas.append(float(area) if ok else float(m.sum()))
    overlap = np.zeros(len(crops), dtype=np.uint32)
    mask_px = np.zeros(len(crops), dtype=np.uint32)
    for i, (m, y0, x0) in enumerate(crops):
        c = count[y0 : y0 + m.shape[0], x0 : x0 + m.shape[1]]
        overlap[i] = int((c[m] >= 2).sum())
        mask_px[i] = int(m.sum())
    rec = ImageRecord(
        n_annotations=len(anns),
        areas=np.asarray(areas, dtype=np.float32),
        overlap_px=overlap,
        mask_px=mask_px,
        degenerate=degenerate,
        duplicate_contours=dup,
        foreground_px=int((count > 0).sum()),
        multi_px=int((count > 1).sum()),
        **meta,
    )
    return rec, count, polys


def _example_key(file_name: str) -> str:
    """Deterministic, well-spread choice of example images: the smallest hash per cell type."""
    return hashlib.sha1(file_name.encode()).hexdigest()


def stream_images(
    json_path: str | os.PathLike[str], duplicates: list[DuplicateImage]
) -> tuple[int, Iterator[tuple[dict, list[dict]]], int]:
    """Stream (image entry, its annotations) from a COCO json without loading its annotations at once.

    Uses :func:`livecell_seg.data.convert.scan_coco` (one streaming pass that remembers where each
    image's annotations are) and decodes one image's annotations at a time, so memory does not grow
    with the number of cells. An image listed twice in the file keeps the annotations of the copy
    with the most annotations (the first on ties); each case is appended to ``duplicates``.
    Returns (number of images, iterator, orphan annotations). Bad files raise InputFileError.
    """

    p = Path(json_path)
    scan = scan_coco(p)
    dup_ids = {name: [int(i) for i in ids] for name, ids in scan.duplicates}

    def gen() -> Iterator[tuple[dict, list[dict]]]:
        with open(p, "rb") as f:
            for im in scan.images:
                anns = [
                    a
                    for s, e in scan.runs.get(int(im["id"]), [])
                    for a in read_run(p, s, e, scan.dict_form, f)
                ]
                ids = dup_ids.get(im["file_name"])
                if ids:
                    own: dict[int, list[dict]] = {i: [] for i in ids}
                    for a in anns:
                        own.setdefault(int(a["image_id"]), []).append(a)
                    best = max(ids, key=lambda i: (len(own[i]), -ids.index(i)))
                    sigs = [_seg_signature(own[i]) for i in ids]
                    duplicates.append(
                        DuplicateImage(
                            im["file_name"],
                            ImageCopy(str(p), best, len(own[best])),
                            [ImageCopy(str(p), i, len(own[i])) for i in ids if i != best],
                            annotations_differ=any(x != sigs[0] for x in sigs[1:]),
                        )
                    )
                    anns = own[best]
                yield im, anns

    return len(scan.images), gen(), scan.orphan_annotations


def compute_stats(
    json_paths: Sequence[str | os.PathLike[str]],
    images_dir: str | os.PathLike[str] | None = None,
    progress: Progress = True,
    n_examples: int = 8,
) -> EdaStats:
    """Gather the report's statistics in one pass, one image at a time (annotations streamed).

    Several jsons are several splits (labelled from their names: train/val/test or the file stem).
    An image in several jsons (or twice in one) counts once: the copy with the most annotations
    (the first on ties), as in :func:`livecell_seg.data.splits.merge_datasets`; all are reported.
    """
    if not json_paths:
        raise LivecellError("no annotation json given")
    t0 = time.perf_counter()
    img_root = Path(images_dir) if images_dir is not None else None
    if img_root is not None and not img_root.is_dir():
        raise InputFileError(img_root, "images folder not found")
    sources: dict[str, str] = {}
    records: dict[str, ImageRecord] = {}
    copies: dict[str, list[ImageCopy]] = defaultdict(list)
    differ: dict[str, bool] = {}
    kept_copy: dict[str, ImageCopy] = {}
    dups: list[DuplicateImage] = []
    intensity: dict[str, IntensityAccumulator] = defaultdict(IntensityAccumulator)
    stats = EdaStats(sources=sources, records=records, duplicates=dups, intensity=intensity)
    stats.images_dir = str(img_root) if img_root is not None else None
    example_keys: dict[str, str] = {}
    n_found = 0
    for jp in json_paths:
        label = split_label(jp, list(sources))
        sources[label] = str(jp)
        n_images, stream, orphans = stream_images(jp, dups)
        stats.orphan_annotations += orphans
        for im, anns in progress_bar(stream, progress, f"eda {label}", total=n_images):
            name = im["file_name"]
            copy = ImageCopy(str(jp), int(im["id"]), len(anns))
            copies[name].append(copy)
            if name in records:  # the same image again, from another json
                prev = records[name]
                if prev.n_annotations != len(anns):
                    differ[name] = True
                if len(anns) <= prev.n_annotations:
                    continue
            h, w = int(im["height"]), int(im["width"])
            ct = cell_type_of(name)
            rec, count, polys = _image_record(
                anns, h, w, file_name=name, cell_type=ct, split=label, group=group_of(name) or f"image:{name}"
            )
            first_time = name not in records
            records[name] = rec
            kept_copy[name] = copy
            if img_root is None or not first_time:  # the pixels of a duplicate were counted already
                continue
            try:
                path = find_image(img_root, name)
            except InputFileError:
                stats.missing_images.append(name)
                continue
            try:
                img = read_image(path)
            except InputFileError:
                stats.unreadable_images.append(name)
                continue
            n_found += 1
            fg = count > 0 if img.shape == count.shape else None
            if img.shape != (h, w):
                stats.size_mismatch.append(f"{name}: file {img.shape[1]}x{img.shape[0]}, json {w}x{h}")
            intensity[ct].add(img, fg)
            key = _example_key(name)
            if (ct in example_keys or len(example_keys) < n_examples) and key < example_keys.get(ct, "g"):
                example_keys[ct] = key
                stats.examples[ct] = Example(name, ct, label, img, polys)
    for name, cs in copies.items():
        if len(cs) > 1 and len({c.source for c in cs}) > 1:
            k = kept_copy[name]
            dups.append(
                DuplicateImage(name, k, [c for c in cs if c != k], annotations_differ=differ.get(name, False))
            )
    dups.sort(key=lambda d: d.file_name)
    if img_root is not None and records and n_found == 0:
        raise InputFileError(img_root, f"none of the {len(records)} annotated images found in this folder")
    stats.seconds = time.perf_counter() - t0
    return stats


# --------------------------------------------------------------------------------------------------
# plots
# --------------------------------------------------------------------------------------------------
def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    plt.rcParams.update(
        {
            "font.size": 9,
            "axes.titlesize": 10,
            "axes.labelsize": 9,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "figure.dpi": 100,
        }
    )
    return plt


def _split_colors(splits: list[str]) -> dict[str, str]:
    extra = ["#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]
    out, i = {}, 0
    for s in splits:
        if s in SPLIT_COLORS:
            out[s] = SPLIT_COLORS[s]
        else:
            out[s] = extra[i % len(extra)]
            i += 1
    return out


def plot_counts(stats: EdaStats) -> bytes:
    """Grouped bars: images and cells per cell type, one bar per split."""
    plt = _plt()
    from matplotlib.ticker import MaxNLocator

    rows = stats.table()
    types, splits = stats.cell_types, stats.splits
    colors = _split_colors(splits)
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    width = 0.8 / len(splits)
    x = np.arange(len(types))
    for ax, key, title in (
        (axes[0], "images", "Images per cell type"),
        (axes[1], "cells", "Annotated cells per cell type"),
    ):
        for j, s in enumerate(splits):
            vals = [next(r[key] for r in rows if r["cell_type"] == t and r["split"] == s) for t in types]
            bars = ax.bar(x + (j - (len(splits) - 1) / 2) * width, vals, width, label=s, color=colors[s])
            ax.bar_label(bars, labels=[f"{v:,}" if v else "" for v in vals], fontsize=7, padding=1)
        ax.set_xticks(x, types)
        ax.set_title(title)
        ax.set_xlabel("cell type")
        ax.set_ylabel(f"{key} (count)")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.margins(y=0.15)
    axes[0].legend(title="split", frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    return figure_png(fig, 100, tight=True, close=True)


def plot_cells_per_image(stats: EdaStats) -> bytes:
    """Histogram of cells per image (all images) and its spread per cell type."""
    plt = _plt()
    from matplotlib.ticker import MaxNLocator

    types = stats.cell_types
    per_type = {
        t: np.array([r.n_annotations for r in stats.records.values() if r.cell_type == t]) for t in types
    }
    allv = np.concatenate(list(per_type.values()))
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), gridspec_kw={"width_ratios": [1, 1.4]})
    bins = np.linspace(0, max(1, allv.max()) * 1.02, min(50, max(5, len(allv) // 2)) + 1)
    axes[0].hist(allv, bins=bins, color="#555555")
    axes[0].set_title(f"Cells per image (all {len(allv):,} images; median {np.median(allv):.0f})")
    axes[0].set_xlabel("annotated cells in the image")
    axes[0].set_ylabel("images")
    axes[0].yaxis.set_major_locator(MaxNLocator(integer=True))
    data = [per_type[t] for t in types]
    axes[1].boxplot(data, showfliers=False, widths=0.5)
    rng = np.random.default_rng(0)
    for i, v in enumerate(data, start=1):
        sub = v if v.size <= 400 else rng.choice(v, 400, replace=False)
        axes[1].scatter(
            i + rng.uniform(-0.18, 0.18, sub.size), sub, s=12, alpha=0.6, color="#1f77b4", lw=0, zorder=3
        )
    axes[1].set_xticks(range(1, len(types) + 1), [f"{t}\n(n={per_type[t].size:,})" for t in types])
    axes[1].set_title("Cells per image by cell type (box: quartiles; dots: images)")
    axes[1].set_xlabel("cell type (number of images)")
    axes[1].set_ylabel("annotated cells per image")
    fig.tight_layout()
    return figure_png(fig, 100, tight=True, close=True)


def plot_areas(stats: EdaStats) -> bytes:
    """Cell area histograms per cell type on a log axis, with the COCO small/medium/large limits."""
    plt = _plt()
    types = stats.cell_types
    all_a = stats._areas(None)
    lo = max(1.0, float(np.percentile(all_a, 0.1)) / 1.5) if all_a.size else 1.0
    hi = max(lo * 10, float(all_a.max()) * 1.2) if all_a.size else 1e5
    bins = np.geomspace(lo, hi, 60)
    ncol = min(4, len(types))
    nrow = -(-len(types) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(2.9 * ncol, 2.5 * nrow + 0.5), sharex=True, squeeze=False)
    for ax in axes.ravel()[len(types) :]:
        ax.set_visible(False)
    for ax, t in zip(axes.ravel(), types):
        a = stats._areas(t)
        ax.axvspan(lo, SIZE_LIMITS[0], color="#d62728", alpha=0.07, lw=0)
        ax.axvspan(SIZE_LIMITS[0], SIZE_LIMITS[1], color="#ff7f0e", alpha=0.07, lw=0)
        ax.axvspan(SIZE_LIMITS[1], hi, color="#2ca02c", alpha=0.07, lw=0)
        ax.hist(a, bins=bins, color="#1f77b4")
        for lim in SIZE_LIMITS:
            ax.axvline(lim, color="k", ls="--", lw=0.8)
        ax.set_xscale("log")
        ax.set_xlim(lo, hi)
        s = float((a < SIZE_LIMITS[0]).mean()) if a.size else 0.0
        lg = float((a >= SIZE_LIMITS[1]).mean()) if a.size else 0.0
        ax.set_title(f"{t}: {a.size:,} cells, median {np.median(a) if a.size else 0:.0f} px²", fontsize=9)
        ax.text(
            0.02,
            0.97,
            f"small {s:.0%}\nmedium {1 - s - lg:.0%}\nlarge {lg:.0%}",
            transform=ax.transAxes,
            va="top",
            fontsize=7.5,
            bbox={"facecolor": "white", "alpha": 0.8, "lw": 0},
        )
        ax.set_ylabel("cells")
    for ax in axes[-1]:
        ax.set_xlabel("cell area (px², log scale)")
    for ax in axes[:, 0] if nrow > 1 else axes[0, :1]:
        ax.set_ylabel("cells")
    fig.suptitle(
        "Cell area per cell type; dashed lines: COCO/LIVECell size limits 324 px² (small | medium) "
        "and 961 px² (medium | large)",
        fontsize=9.5,
    )
    fig.tight_layout()
    return figure_png(fig, 100, tight=True, close=True)


def plot_overlap(stats: EdaStats) -> bytes:
    """Share of cells overlapping another cell per type, and how much of a cell the overlap covers."""
    plt = _plt()
    summ = [s for s in stats.overlap_summary() if s["cell_type"] != "all"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    types = [s["cell_type"] for s in summ]
    vals = [100 * s["overlapping"] for s in summ]
    bars = axes[0].bar(types, vals, color="#9467bd")
    axes[0].bar_label(bars, labels=[f"{v:.1f}%" for v in vals], fontsize=7.5, padding=1)
    axes[0].set_title("Cells whose mask overlaps another annotation")
    axes[0].set_xlabel("cell type")
    axes[0].set_ylabel("cells overlapping another (%)")
    axes[0].margins(y=0.15)
    ov = np.concatenate([r.overlap_px for r in stats.records.values()]) if stats.records else np.zeros(0)
    px = np.concatenate([r.mask_px for r in stats.records.values()]) if stats.records else np.zeros(0)
    hit = ov > 0
    frac = 100 * ov[hit] / np.maximum(px[hit], 1)
    if frac.size:
        axes[1].hist(frac, bins=np.linspace(0, 100, 41), color="#9467bd")
        axes[1].set_yscale("log")
        axes[1].axvline(50, color="k", ls="--", lw=0.8)
        axes[1].text(
            51,
            0.95,
            "> 50%: likely a duplicated contour",
            transform=axes[1].get_xaxis_transform(),
            fontsize=7.5,
            va="top",
        )
    else:
        axes[1].text(
            0.5, 0.5, "no overlapping annotations", ha="center", va="center", transform=axes[1].transAxes
        )
    axes[1].set_title(f"Overlapping cells ({int(hit.sum()):,}): share of the cell's area overlapped")
    axes[1].set_xlabel("overlapped area / cell area (%)")
    axes[1].set_ylabel("cells (log scale)")
    fig.tight_layout()
    return figure_png(fig, 100, tight=True, close=True)


def plot_intensity(stats: EdaStats) -> bytes:
    """Grey-value histograms per cell type and per-image mean intensity spread."""
    plt = _plt()
    types = [t for t in stats.cell_types if t in stats.intensity and stats.intensity[t].hist.sum()]
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), gridspec_kw={"width_ratios": [1.3, 1]})
    cmap = plt.get_cmap("tab10")
    total = None
    if types:  # histograms of 8- and 16-bit images differ in length: summed on the longest
        size = max(stats.intensity[t].hist.size for t in types)
        total = np.zeros(size, dtype=np.int64)
        for t in types:
            h = stats.intensity[t].hist
            total[: h.size] += h
        cum = np.cumsum(total) / max(1, total.sum())
        lo = int(np.searchsorted(cum, 0.0005))
        hi = int(np.searchsorted(cum, 0.9995)) + 1
    for i, t in enumerate(types):
        h = stats.intensity[t].hist.astype(np.float64)
        dens = h / h.sum()
        axes[0].plot(np.arange(h.size), dens, color=cmap(i % 10), lw=1.2, label=t)
    if types:
        axes[0].set_xlim(lo, hi)
        axes[0].legend(frameon=False, fontsize=8)
    axes[0].set_yscale("log")
    axes[0].set_title("Grey-value distribution per cell type (all pixels)")
    axes[0].set_xlabel("grey value (stored image units)")
    axes[0].set_ylabel("fraction of pixels (log scale)")
    data = [np.asarray(stats.intensity[t].image_stds) for t in types]
    if data:
        axes[1].boxplot(data, showfliers=False, widths=0.5)
        rng = np.random.default_rng(0)
        for i, v in enumerate(data, start=1):
            sub = v if v.size <= 400 else rng.choice(v, 400, replace=False)
            axes[1].scatter(i + rng.uniform(-0.18, 0.18, sub.size), sub, s=12, alpha=0.6, lw=0, zorder=3)
        axes[1].set_xticks(range(1, len(types) + 1), types)
        axes[1].ticklabel_format(axis="y", useOffset=False, style="plain")
    axes[1].set_title("Contrast: standard deviation of grey values per image")
    axes[1].set_xlabel("cell type")
    axes[1].set_ylabel("image std (stored units)")
    fig.tight_layout()
    return figure_png(fig, 100, tight=True, close=True)


def plot_examples(stats: EdaStats, max_side_px: int = 480) -> bytes:
    """Example images (one per cell type) with every annotation's outline drawn."""
    plt = _plt()
    from matplotlib.collections import PolyCollection

    exs = [stats.examples[t] for t in sorted(stats.examples)]
    ncol = len(exs) if len(exs) <= 3 else (2 if len(exs) == 4 else 4)
    nrow = -(-len(exs) // ncol)
    h0, w0 = exs[0].image.shape
    panel_w = max_side_px / 100
    fig, axes = plt.subplots(
        nrow, ncol, figsize=(panel_w * ncol, panel_w * h0 / w0 * nrow + 0.45 * nrow), squeeze=False
    )
    for ax in axes.ravel()[len(exs) :]:
        ax.set_visible(False)
    for ax, ex in zip(axes.ravel(), exs):
        img = ex.image.astype(np.float32)
        lo, hi = np.percentile(img, [0.5, 99.5])
        ax.imshow(img, cmap="gray", vmin=lo, vmax=hi, interpolation="antialiased")
        cmap = plt.get_cmap("hsv")
        colors = [cmap((i * 0.61803) % 1.0) for i in range(len(ex.polygons))]
        ax.add_collection(PolyCollection(ex.polygons, facecolors="none", edgecolors=colors, linewidths=0.6))
        h, w = ex.image.shape
        ax.set_xlim(-0.5, w - 0.5)
        ax.set_ylim(h - 0.5, -0.5)
        ax.set_title(f"{ex.file_name} ({ex.split}, {len(ex.polygons)} outlines)", fontsize=8)
        ax.set_axis_off()
    fig.tight_layout()
    return figure_png(fig, 100, tight=True, close=True)


# --------------------------------------------------------------------------------------------------
# HTML
# --------------------------------------------------------------------------------------------------
#: HTML escaping in the report sections
_esc = html.escape


def _html_counts(parts: list[str], stats: EdaStats, d: dict[str, Any], figures: dict[str, bytes]) -> None:
    """Images, wells and cells per cell type and split; well leakage between splits."""
    rows = stats.table()
    parts.append("<h2>Images, wells and cells per cell type and split</h2>")
    parts.append(
        html_table(
            ["cell type", "split", "images", "wells", "cells", "cells / image"],
            [
                [
                    _esc(r["cell_type"]),
                    _esc(r["split"]),
                    f"{r['images']:,}",
                    f"{r['wells']:,}",
                    f"{r['cells']:,}",
                    format_number(r["cells_per_image"]),
                ]
                for r in rows
            ],
        )
    )
    parts.append(img_tag(figures["counts"], "images and cells per cell type"))
    shared = stats.shared_groups()
    if len(stats.splits) > 1:
        if shared:
            ex = ", ".join(f"{_esc(g)} ({'/'.join(s)})" for g, s in list(shared.items())[:12])
            parts.append(
                f"<p class='warn'><b>Leakage:</b> {len(shared)} well(s) have images in more than one split "
                f"(images of one well are near-copies: a time series and crops of the same field); e.g. {ex}"
                f"{' ...' if len(shared) > 12 else ''}. <code>livecell-seg split</code> makes splits by well.</p>"
            )
        else:
            parts.append("<p>No well has images in more than one split.</p>")


def _html_cells_per_image(
    parts: list[str], stats: EdaStats, d: dict[str, Any], figures: dict[str, bytes]
) -> None:
    """Cells per image: summary and histogram."""
    cpi = d["cells_per_image"]
    parts.append("<h2>Cells per image</h2>")
    parts.append(
        f"<p>Mean {cpi['mean']:.1f}, median {cpi['median']:.0f}, range {cpi['min']}–{cpi['max']} cells per image. "
        "Fewest: "
        + ", ".join(f"<code>{_esc(x['file_name'])}</code> ({x['cells']})" for x in d["fewest_cells"][:5])
        + ".</p>"
    )
    parts.append(img_tag(figures["cells_per_image"], "cells per image"))


def _html_areas(parts: list[str], stats: EdaStats, d: dict[str, Any], figures: dict[str, bytes]) -> None:
    """Cell areas per cell type (COCO size ranges)."""
    parts.append("<h2>Cell area</h2>")
    parts.append(
        "<p class='note'>Area = the annotation's <code>area</code> field (what COCO evaluation uses to put a "
        "ground-truth cell in the small / medium / large range; the rasterized pixel count when absent). "
        "Small &lt; 324 px² ≤ medium &lt; 961 px² ≤ large.</p>"
    )
    parts.append(
        html_table(
            [
                "cell type",
                "cells",
                "5th pct (px²)",
                "median (px²)",
                "95th pct (px²)",
                "small",
                "medium",
                "large",
            ],
            [
                [
                    _esc(a["cell_type"]),
                    f"{a['cells']:,}",
                    format_number(a["p5"], 0),
                    format_number(a["median"], 0),
                    format_number(a["p95"], 0),
                ]
                + [f"{100 * a[k]:.1f}%" for k in ("small", "medium", "large")]
                for a in d["areas"]
            ],
        )
    )
    parts.append(img_tag(figures["areas"], "cell area per cell type"))


def _html_overlap(parts: list[str], stats: EdaStats, d: dict[str, Any], figures: dict[str, bytes]) -> None:
    """Overlap between annotations per cell type."""
    parts.append("<h2>Overlap between annotations</h2>")
    parts.append(
        "<p class='note'>Each annotation rasterized like pycocotools, per image; a cell overlaps when some of "
        "its pixels are also inside another annotation. Polygons of touching LIVECell cells often overlap by "
        "a pixel or two; a cell more than half covered by another is most likely a duplicated contour. "
        "<i>Pixels in ≥ 2 cells</i> is the share of foreground pixels claimed by two or more annotations "
        "(a semantic/instance label image must give them to one cell).</p>"
    )
    parts.append(
        html_table(
            [
                "cell type",
                "cells",
                "overlapping",
                "median overlap (px)",
                "median overlap / area",
                ">50% covered",
                "pixels in ≥ 2 cells",
                "identical contours",
                "empty/degenerate",
            ],
            [
                [
                    _esc(o["cell_type"]),
                    f"{o['cells']:,}",
                    f"{100 * o['overlapping']:.1f}%",
                    format_number(o["median_overlap_px"], 0),
                    f"{100 * o['median_overlap_fraction']:.1f}%",
                    f"{o['mostly_covered']:,}",
                    f"{100 * o['multi_px_share']:.2f}%",
                    f"{o['duplicate_contours']:,}",
                    f"{o['degenerate']:,}",
                ]
                for o in d["overlap"]
            ],
        )
    )
    parts.append(img_tag(figures["overlap"], "overlap between annotations"))


def _html_duplicates(parts: list[str], stats: EdaStats, d: dict[str, Any], figures: dict[str, bytes]) -> None:
    """Image files listed more than once."""
    parts.append("<h2>Duplicate images</h2>")
    if stats.duplicates:
        parts.append(
            f"<p>{len(stats.duplicates)} image file(s) are listed more than once; each is counted once above "
            "(the copy with the most annotations).</p>"
        )
        parts.append(
            html_table(
                ["file", "kept (json, id, cells)", "dropped copies", "annotations differ"],
                [
                    [
                        f"<code>{_esc(x.file_name)}</code>",
                        f"{_esc(Path(x.kept.source).name)} #{x.kept.image_id} ({x.kept.n_annotations})",
                        "; ".join(
                            f"{_esc(Path(c.source).name)} #{c.image_id} ({c.n_annotations})"
                            for c in x.dropped
                        ),
                        "yes" if x.annotations_differ else "no",
                    ]
                    for x in stats.duplicates[:200]
                ],
            )
        )
        if len(stats.duplicates) > 200:
            parts.append(f"<p class='note'>... and {len(stats.duplicates) - 200} more (see stats.json).</p>")
    else:
        parts.append("<p>No image is listed twice (same file name under two ids or in two jsons).</p>")


def _html_intensity(parts: list[str], stats: EdaStats, d: dict[str, Any], figures: dict[str, bytes]) -> None:
    """Grey-value statistics per cell type (when an image folder was given)."""
    parts.append("<h2>Image intensities</h2>")
    if "intensity" in figures:
        parts.append(
            "<p class='note'>Exact statistics of the stored grey values (streamed histograms; "
            f"stored types: {_esc(', '.join(sorted({t for a in stats.intensity.values() for t in a.dtypes})))}). "
            "<i>In cells</i> / <i>background</i>: mean grey value inside / outside all annotations.</p>"
        )
        parts.append(
            html_table(
                [
                    "cell type",
                    "images",
                    "mean",
                    "std",
                    "p1",
                    "p5",
                    "median",
                    "p95",
                    "p99",
                    "in cells",
                    "background",
                ],
                [
                    [_esc(ct), f"{s['images']:,}"]
                    + [format_number(s[k]) for k in ("mean", "std")]
                    + [format_number(s[k], 0) for k in ("p1", "p5", "p50", "p95", "p99")]
                    + [format_number(s["mean_in_cells"]), format_number(s["mean_background"])]
                    for ct, s in d["intensity"].items()
                    if s
                ],
            )
        )
        parts.append(img_tag(figures["intensity"], "intensity statistics"))
    else:
        parts.append("<p>No image folder given (<code>--images DIR</code>): no intensity statistics.</p>")


def _html_problems(parts: list[str], stats: EdaStats, d: dict[str, Any], figures: dict[str, bytes]) -> None:
    """Missing, unreadable or mis-sized images and orphan annotations, in one warning line."""
    problems = []
    if stats.missing_images:
        problems.append(
            f"{len(stats.missing_images)} image(s) not found, e.g. {_esc(stats.missing_images[0])}"
        )
    if stats.unreadable_images:
        problems.append(
            f"{len(stats.unreadable_images)} unreadable image(s), e.g. {_esc(stats.unreadable_images[0])}"
        )
    if stats.size_mismatch:
        problems.append(
            f"{len(stats.size_mismatch)} image(s) whose size differs from the json: {_esc(stats.size_mismatch[0])}"
        )
    if stats.orphan_annotations:
        problems.append(f"{stats.orphan_annotations} annotation(s) point at no image (ignored)")
    if problems:
        parts.append("<p class='warn'>" + "; ".join(problems) + ".</p>")


def _html_examples(parts: list[str], stats: EdaStats, d: dict[str, Any], figures: dict[str, bytes]) -> None:
    """One example image per cell type with its outlines."""
    if "examples" in figures:
        parts.append("<h2>Example images with their annotations</h2>")
        parts.append(
            "<p class='note'>One image per cell type (chosen deterministically), contrast stretched to the "
            "0.5–99.5 percentiles; every annotation's polygon outlined in its own colour.</p>"
        )
        parts.append(img_tag(figures["examples"], "example images with outlines"))


#: the report's sections, in page order: ``f(parts, stats, stats.to_dict(), figures)`` appends to ``parts``
_HTML_SECTIONS = (
    _html_counts,
    _html_cells_per_image,
    _html_areas,
    _html_overlap,
    _html_duplicates,
    _html_intensity,
    _html_problems,
    _html_examples,
)


def render_html(stats: EdaStats, figures: dict[str, bytes]) -> str:
    """The report page: tables and the embedded figures, one section function after the other."""
    d = stats.to_dict()
    e = html.escape
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<title>LIVECell data exploration</title>",
        f"<style>{CSS}</style></head><body>",
        "<h1>LIVECell data exploration</h1>",
        "<p>Annotations: "
        + ", ".join(f"<b>{e(k)}</b> = <code>{e(v)}</code>" for k, v in stats.sources.items())
        + (f"; images: <code>{e(stats.images_dir)}</code>" if stats.images_dir else "; no image folder given")
        + f". {d['images']:,} unique images, {d['cells']:,} annotated cells. "
        f"Made by <code>livecell-seg eda</code> in {stats.seconds:.1f} s.</p>",
    ]
    for section in _HTML_SECTIONS:
        section(parts, stats, d, figures)
    parts.append(
        "<p class='note'>Numbers behind this page: <code>stats.json</code> next to it.</p></body></html>"
    )
    return "\n".join(parts)


def make_figures(stats: EdaStats) -> dict[str, bytes]:
    """All figures of the report as PNG bytes, by name."""
    if not stats.records:
        raise LivecellError("no images in the annotation files: nothing to report")
    figs = {
        "counts": plot_counts(stats),
        "cells_per_image": plot_cells_per_image(stats),
        "areas": plot_areas(stats),
        "overlap": plot_overlap(stats),
    }
    if any(a.hist.sum() for a in stats.intensity.values()):
        figs["intensity"] = plot_intensity(stats)
    if stats.examples:
        figs["examples"] = plot_examples(stats)
    return figs


def make_report(
    json_paths: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    images_dir: str | os.PathLike[str] | None = None,
    n_examples: int = 8,
    progress: Progress = True,
    save_pngs: bool = False,
) -> Path:
    """Write the EDA report (``index.html``, ``stats.json``; PNGs too with ``save_pngs``). Returns the html path."""
    stats = compute_stats(json_paths, images_dir=images_dir, progress=progress, n_examples=n_examples)
    dtypes = sorted({t for a in stats.intensity.values() for t in a.dtypes})
    if len(dtypes) > 1:
        logging.getLogger(__name__).warning(
            "the images are stored as %s: their grey values are not on one scale (the intensity "
            "histograms mix them)",
            " and ".join(dtypes),
        )
    figs = make_figures(stats)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputFileError(out, "exists and is not a folder")
    page = out / "index.html"
    with atomic_path(page) as tmp:
        tmp.write_text(render_html(stats, figs), encoding="utf-8")
    write_json_atomic(out / "stats.json", _jsonable(stats.to_dict()))
    if save_pngs:
        for name, png in figs.items():
            with atomic_path(out / f"{name}.png") as tmp:
                tmp.write_bytes(png)
    return page


def _jsonable(o: Any) -> Any:
    """numpy scalars -> Python, NaN -> None (strict JSON)."""
    if isinstance(o, dict):
        return {str(k): _jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_jsonable(v) for v in o]
    if isinstance(o, np.generic):
        o = o.item()
    if isinstance(o, float) and o != o:
        return None
    return o


__all__ = [
    "SIZE_LIMITS",
    "EdaStats",
    "ImageRecord",
    "IntensityAccumulator",
    "compute_stats",
    "make_figures",
    "make_report",
    "render_html",
    "split_label",
]
