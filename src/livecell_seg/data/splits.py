"""Leakage-free train/val/test splits of LIVECell, grouped by (cell type, well), stratified by cell type.

LIVECell images of one well are near-copies of each other (a time series, several crops per field of
view), and the official test split holds other wells than train/val; a random per-image split leaks.
This module merges one or more LIVECell jsons, removes duplicate images (the ~30 images that are in
both the official train and val jsons, and images listed twice under two ids in one json), and
carves deterministic splits with scikit-learn's ``StratifiedGroupKFold``:

* groups = ``<cell type>_<well>`` from the file name ``<CellType>_Phase_<Well>_<Loc>_<Time>_<Crop>.tif``;
  a name outside that pattern is its own group (with a warning);
* stratified by cell type; the test part is carved first (``test`` fraction of all images), then the
  validation part (``val`` fraction of all images) from the rest;
* afterwards, a cell type missing from a split gets one of its wells moved there (the smallest well
  of the split holding most of its wells), so every split holds every cell type that has at least as
  many wells as there are splits, and every cell type is in train (one that has fewer wells than
  splits is in as many splits as it has wells, with a warning).

Python API: :func:`split_datasets` → :class:`SplitResult`, :func:`write_splits`.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import warnings
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputFileError, LivecellError
from ..io import atomic_path, write_json_atomic
from .coco import CocoDataset, cell_type_of, coco_from_dict, load_coco, parse_livecell_name

#: split names, in the order they are carved and reported
SPLIT_NAMES = ("train", "val", "test")


# --------------------------------------------------------------------------------------------------
# loading one json with the duplicate policy, merging several
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ImageCopy:
    """One entry of an image in one json file."""

    source: str  #: the json file it comes from
    image_id: int  #: its id in that file
    n_annotations: int  #: number of annotations attached to that id

    def as_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict."""
        return {"source": self.source, "image_id": self.image_id, "n_annotations": self.n_annotations}


@dataclass
class DuplicateImage:
    """An image file listed more than once (in one json under two ids, or in several jsons)."""

    file_name: str
    kept: ImageCopy
    dropped: list[ImageCopy]
    #: True when the copies do not carry the same set of annotations (then the copy with most is kept)
    annotations_differ: bool

    @property
    def cross_file(self) -> bool:
        """True when the copies come from different json files."""
        return any(c.source != self.kept.source for c in self.dropped)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict."""
        return {
            "file_name": self.file_name,
            "kept": self.kept.as_dict(),
            "dropped": [c.as_dict() for c in self.dropped],
            "annotations_differ": self.annotations_differ,
            "cross_file": self.cross_file,
        }


def _seg_signature(anns: list[dict]) -> Counter:
    """Multiset of the annotations' contours (to tell identical annotation sets from different ones)."""
    return Counter(json.dumps(a.get("segmentation"), sort_keys=True) for a in anns)


def _read_json(p: Path) -> Any:
    """json.load the file; on any failure let :func:`load_coco` raise its one-line InputFileError."""
    try:
        with open(p, "rb") as f:
            return json.load(f)
    except MemoryError:
        raise InputFileError(p, "too large to load in memory") from None
    except Exception:  # noqa: BLE001 - load_coco gives the precise one-line message
        load_coco(p)
        raise InputFileError(p, "cannot be read as JSON") from None


def load_livecell_json(path: str | os.PathLike[str]) -> tuple[CocoDataset, list[DuplicateImage]]:
    """Read one LIVECell json and drop duplicate image entries, keeping one copy's annotations.

    Unlike :func:`livecell_seg.data.coco.load_coco` (which pools the annotations of all copies
    onto the first one), the copies' annotations are **not** pooled: the copy with the most
    annotations is kept with its own annotations (the first one when they tie), the others are
    dropped, and each case is returned as a :class:`DuplicateImage`. Bad files raise
    :class:`InputFileError`.
    """
    p = Path(path)
    if not p.is_file():
        load_coco(p)  # raises the right one-line error (missing, folder, ...)
    d = _read_json(p)
    ds = coco_from_dict(d, path=p)  # validates; pools duplicates (undone below)
    if not ds.duplicates:
        return ds, []
    # gather every duplicated id's own annotations from the raw file
    dup_ids = {int(i) for _name, ids in ds.duplicates for i in ids}
    own: dict[int, list[dict]] = {i: [] for i in dup_ids}
    raw = d["annotations"]
    for a in raw.values() if isinstance(raw, dict) else raw:
        iid = int(a["image_id"])
        if iid in own:
            own[iid].append(a)
    drop_ids: set[int] = set()
    dups: list[DuplicateImage] = []
    for name, ids in ds.duplicates:
        ids = [int(i) for i in ids]
        best = max(ids, key=lambda i: (len(own[i]), -ids.index(i)))  # most annotations, then first
        sigs = [_seg_signature(own[i]) for i in ids]
        differ = any(s != sigs[0] for s in sigs[1:])
        dups.append(
            DuplicateImage(
                file_name=name,
                kept=ImageCopy(str(p), best, len(own[best])),
                dropped=[ImageCopy(str(p), i, len(own[i])) for i in ids if i != best],
                annotations_differ=differ,
            )
        )
        drop_ids.update(i for i in ids if i != best)
    # rebuild from a cleaned dict: the kept copy of each name, only its own annotations
    images = [im for im in d["images"] if int(im["id"]) not in drop_ids]
    if isinstance(raw, dict):
        anns = [
            a if "id" in a else {**a, "id": int(k)}
            for k, a in raw.items()
            if int(a["image_id"]) not in drop_ids
        ]
    else:
        anns = [a for a in raw if int(a["image_id"]) not in drop_ids]
    clean = {k: v for k, v in d.items() if k not in ("images", "annotations")}
    clean["images"] = images
    clean["annotations"] = anns
    ds = coco_from_dict(clean, path=p)
    return ds, dups


@dataclass
class MergedDataset:
    """Several LIVECell jsons merged into one dataset without duplicates and with unique ids."""

    dataset: CocoDataset  #: merged images (one per file name) and their annotations
    sources: list[str]  #: the json files, in the order given
    source_of: dict[int, str]  #: merged image id -> json file its kept copy comes from
    duplicates: list[DuplicateImage]  #: within-file and cross-file duplicates removed
    remapped_image_ids: int = 0  #: images given a new id because their id was taken by another file
    remapped_annotation_ids: int = 0  #: annotations given a new id for the same reason
    orphan_annotations: int = 0  #: annotations pointing at no image (ignored), all files together
    input_images: dict[str, int] = field(default_factory=dict)  #: image entries per json file


def _merge_categories(cat_lists: list[tuple[str, list[dict]]]) -> list[dict]:
    by_id: dict[int, dict] = {}
    for src, cats in cat_lists:
        for c in cats:
            cid = int(c.get("id", 1))
            if cid in by_id and by_id[cid].get("name") != c.get("name"):
                raise InputFileError(
                    src,
                    f"category {cid} is {c.get('name')!r} here but {by_id[cid].get('name')!r} in another file",
                )
            by_id.setdefault(cid, dict(c))
    return [by_id[k] for k in sorted(by_id)]


def _unique_ids(
    kept: dict[str, tuple[dict, list[dict], str]],
) -> tuple[list[dict], dict[int, list[dict]], dict[int, str], int, int]:
    """Unique image ids, then unique annotation ids (first come keeps its id; a colliding one is
    renumbered above the largest id in use) of the kept copies: ``(images, anns_by_image,
    source_of, renumbered images, renumbered annotations)``."""
    max_img = max((int(im["id"]) for im, _, _ in kept.values()), default=0)
    max_ann = max((int(a.get("id", 0)) for _, anns, _ in kept.values() for a in anns), default=0)
    used_img: set[int] = set()
    used_ann: set[int] = set()
    images: list[dict] = []
    anns_by_image: dict[int, list[dict]] = {}
    source_of: dict[int, str] = {}
    remap_img = remap_ann = 0
    for im, anns, src in kept.values():
        iid = int(im["id"])
        if iid in used_img:
            max_img += 1
            iid = max_img
            im = {**im, "id": iid}
            remap_img += 1
        used_img.add(iid)
        new_anns = []
        for a in anns:
            aid = int(a["id"]) if "id" in a else None
            changed = {}
            if aid is None or aid in used_ann:
                max_ann += 1
                aid = max_ann
                changed["id"] = aid
                remap_ann += 1
            if int(a.get("image_id", -1)) != iid:
                changed["image_id"] = iid
            used_ann.add(aid)
            new_anns.append({**a, **changed} if changed else a)
        images.append(im)
        anns_by_image[iid] = new_anns
        source_of[iid] = src
    return images, anns_by_image, source_of, remap_img, remap_ann


def merge_datasets(json_paths: Sequence[str | os.PathLike[str]]) -> MergedDataset:
    """Load and merge LIVECell jsons (list or dict form): one copy per file name, unique ids.

    An image found in several files (or twice in one) is kept once: the copy with the most
    annotations (the first one given when they tie), with its own annotations; every case is
    reported in ``duplicates``. Image and annotation ids that collide across files are renumbered
    (above the largest id in use); nothing else is changed.
    """
    if not json_paths:
        raise LivecellError("no annotation json given")
    sources: list[str] = []
    kept: dict[str, tuple[dict, list[dict], str]] = {}  # file_name -> (image, anns, source)
    copies: dict[str, list[ImageCopy]] = defaultdict(list)
    sigs_differ: dict[str, bool] = {}
    dups: list[DuplicateImage] = []
    cats: list[tuple[str, list[dict]]] = []
    info: dict = {}
    orphans = 0
    input_images: dict[str, int] = {}
    for jp in json_paths:
        ds, within = load_livecell_json(jp)
        src = str(jp)
        if src in sources:
            raise LivecellError(f"{src}: given twice")
        sources.append(src)
        dups.extend(within)
        input_images[src] = len(ds.images) + sum(len(x.dropped) for x in within)
        cats.append((src, ds.categories))
        info = info or ds.info
        orphans += ds.orphan_annotations
        for im in ds.images:
            name = im["file_name"]
            anns = ds.anns_by_image.get(int(im["id"]), [])
            copy = ImageCopy(src, int(im["id"]), len(anns))
            if name not in kept:
                kept[name] = (im, anns, src)
                copies[name].append(copy)
                continue
            prev_im, prev_anns, _ = kept[name]
            if _seg_signature(prev_anns) != _seg_signature(anns):
                sigs_differ[name] = True
            copies[name].append(copy)
            if len(anns) > len(prev_anns):
                kept[name] = (im, anns, src)
    for name, cs in copies.items():
        if len(cs) < 2:
            continue
        im, anns, src = kept[name]
        k = next(c for c in cs if c.source == src and c.image_id == int(im["id"]))
        dups.append(
            DuplicateImage(
                name, k, [c for c in cs if c is not k], annotations_differ=sigs_differ.get(name, False)
            )
        )
    images, anns_by_image, source_of, remap_img, remap_ann = _unique_ids(kept)
    merged = CocoDataset(
        path=None,
        images=images,
        anns_by_image=anns_by_image,
        categories=_merge_categories(cats),
        duplicates=[],
        info=dict(info),
    )
    return MergedDataset(
        dataset=merged,
        sources=sources,
        source_of=source_of,
        duplicates=sorted(dups, key=lambda x: x.file_name),
        remapped_image_ids=remap_img,
        remapped_annotation_ids=remap_ann,
        orphan_annotations=orphans,
        input_images=input_images,
    )


# --------------------------------------------------------------------------------------------------
# groups and splitting
# --------------------------------------------------------------------------------------------------
def group_of(file_name: str) -> str | None:
    """The leakage group ``<cell type>_<well>`` of a LIVECell file name, or None if it is not one."""
    n = parse_livecell_name(file_name)
    return f"{n.cell_type}_{n.well}" if n is not None else None


def choose_folds(
    fraction: float, n_groups: int, max_folds: int = 20, tolerance: float = 0.0125
) -> tuple[int, int]:
    """(m, k): take ``m`` of ``k`` StratifiedGroupKFold folds to approximate ``fraction``.

    The smallest ``k`` whose best ``m/k`` is within ``tolerance`` of the fraction; failing that,
    the closest ``m/k`` (ties: smallest k). ``k`` never exceeds the number of groups.
    """
    if n_groups < 2:
        raise LivecellError(f"cannot split {n_groups} group(s): need at least 2 wells/groups")
    best: tuple[float, int, int] | None = None
    for k in range(2, min(n_groups, max_folds) + 1):
        m = min(k - 1, max(1, round(fraction * k)))
        err = abs(m / k - fraction)
        if err <= tolerance:
            return m, k
        if best is None or err < best[0] - 1e-12:
            best = (err, m, k)
    assert best is not None
    return best[1], best[2]


def _carve(
    idx: list[int], labels: list[str], groups: list[str], fraction: float, seed: int
) -> tuple[set[int], tuple[int, int], bool]:
    """Indices (subset of ``idx``) forming about ``fraction`` of them, whole groups, stratified.

    Returns (taken indices, (m folds taken, of k), stratified?). Stratification is dropped only when
    no cell type has two images left (StratifiedGroupKFold cannot stratify then).
    """
    import numpy as np
    from sklearn.model_selection import StratifiedGroupKFold

    sub_groups = [groups[i] for i in idx]
    # StratifiedGroupKFold refuses more folds than the largest class has images
    biggest_class = max(Counter(labels[i] for i in idx).values(), default=0)
    stratified = biggest_class >= 2
    max_folds = min(20, biggest_class) if stratified else 20
    m, k = choose_folds(fraction, len(set(sub_groups)), max_folds=max(2, max_folds))
    y = np.array([labels[i] if stratified else "all" for i in idx])
    g = np.array(sub_groups)
    sgkf = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "least populated class..." - reported by us
        folds = [test for _train, test in sgkf.split(np.zeros((len(idx), 1)), y, g)]
    # of the C(k, m) ways to take m folds, the one closest in size to the target (first on ties)
    target = fraction * len(idx)
    sizes = [len(f) for f in folds]
    chosen: tuple[int, ...] = tuple(range(m))
    if math.comb(k, m) <= 5000:
        chosen = min(
            itertools.combinations(range(k), m), key=lambda c: abs(sum(sizes[i] for i in c) - target)
        )
    taken: set[int] = set()
    for c in chosen:
        taken.update(idx[j] for j in folds[c])
    return taken, (m, k), stratified


@dataclass
class SplitRow:
    """Images, wells (groups) and cells of one cell type in one split."""

    cell_type: str
    split: str
    images: int
    wells: int
    cells: int

    def as_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict."""
        return dict(self.__dict__)


@dataclass
class SplitResult:
    """The outcome of :func:`split_datasets`: which split every merged image landed in, and why."""

    merged: MergedDataset
    split_of: dict[int, str]  #: image id -> "train" / "val" / "test"
    group_of: dict[int, str]  #: image id -> leakage group (``<cell type>_<well>`` or the file name)
    val: float
    test: float
    seed: int
    warnings: list[str] = field(default_factory=list)
    #: groups moved after carving so that a cell type with enough wells is in every split
    moved_groups: list[dict[str, str]] = field(default_factory=list)
    folds: dict[str, tuple[int, int]] = field(default_factory=dict)  #: split -> (m folds of k)

    @property
    def dataset(self) -> CocoDataset:
        """The merged, deduplicated dataset."""
        return self.merged.dataset

    @property
    def splits(self) -> tuple[str, ...]:
        """The split names produced (train always; val and test when their fraction is > 0)."""
        return tuple(
            s
            for s in SPLIT_NAMES
            if s == "train" or (s == "val" and self.val > 0) or (s == "test" and self.test > 0)
        )

    def image_ids(self, split: str) -> list[int]:
        """Ids of the images of one split, in the merged dataset's order."""
        return [int(im["id"]) for im in self.dataset.images if self.split_of[int(im["id"])] == split]

    def coco_dict(self, split: str) -> dict:
        """A valid COCO dict of one split (annotations as a list)."""
        d = self.dataset.to_coco_dict(self.image_ids(split))
        d["info"] = {
            **d.get("info", {}),
            "livecell_seg_split": {"split": split, "val": self.val, "test": self.test, "seed": self.seed},
        }
        return d

    def rows(self) -> list[SplitRow]:
        """Images, wells and cells per cell type and split (cell types sorted by name)."""
        images: Counter = Counter()
        cells: Counter = Counter()
        wells: dict[tuple[str, str], set[str]] = defaultdict(set)
        for im in self.dataset.images:
            iid = int(im["id"])
            key = (cell_type_of(im["file_name"]), self.split_of[iid])
            images[key] += 1
            wells[key].add(self.group_of[iid])
            cells[key] += len(self.dataset.anns_by_image.get(iid, []))
        types = sorted({ct for ct, _ in images})
        return [
            SplitRow(ct, s, images[(ct, s)], len(wells.get((ct, s), ())), cells[(ct, s)])
            for ct in types
            for s in self.splits
        ]

    def report(self) -> dict[str, Any]:
        """Everything about the split as a JSON-friendly dict (written as ``split_report.json``)."""
        totals = {s: {"images": 0, "wells": 0, "cells": 0} for s in self.splits}
        for r in self.rows():
            for k in ("images", "wells", "cells"):
                totals[r.split][k] += getattr(r, k)
        n = len(self.dataset.images)
        return {
            "settings": {"val": self.val, "test": self.test, "seed": self.seed},
            "inputs": self.merged.input_images,
            "images": n,
            "cells": self.dataset.n_annotations,
            "fractions": {s: (totals[s]["images"] / n if n else 0.0) for s in self.splits},
            "folds": {s: {"taken": m, "of": k} for s, (m, k) in self.folds.items()},
            "totals": totals,
            "rows": [r.as_dict() for r in self.rows()],
            "duplicates": [d.as_dict() for d in self.merged.duplicates],
            "remapped_image_ids": self.merged.remapped_image_ids,
            "remapped_annotation_ids": self.merged.remapped_annotation_ids,
            "orphan_annotations": self.merged.orphan_annotations,
            "moved_groups": self.moved_groups,
            "warnings": self.warnings,
            "groups": {s: sorted({self.group_of[i] for i in self.image_ids(s)}) for s in self.splits},
        }


def split_merged(merged: MergedDataset, val: float = 0.2, test: float = 0.0, seed: int = 0) -> SplitResult:
    """Split an already merged dataset; see :func:`split_datasets`."""
    for name, f in (("val", val), ("test", test)):
        if not 0.0 <= f < 1.0:
            raise LivecellError(f"--{name} must be a fraction in [0, 1), got {f}")
    if val + test >= 1.0:
        raise LivecellError(f"--val + --test must leave images for training (got {val} + {test})")
    if val == 0 and test == 0:
        raise LivecellError("nothing to split: both --val and --test are 0")
    ds = merged.dataset
    if not ds.images:
        raise LivecellError("no images in the annotation files")
    images = sorted(ds.images, key=lambda im: im["file_name"])  # input order does not matter
    ids = [int(im["id"]) for im in images]
    labels = [cell_type_of(im["file_name"]) for im in images]
    groups: list[str] = []
    unparsed: list[str] = []
    for im in images:
        g = group_of(im["file_name"])
        if g is None:
            unparsed.append(im["file_name"])
            g = f"image:{im['file_name']}"
        groups.append(g)
    warns: list[str] = []
    if unparsed:
        ex = ", ".join(unparsed[:3]) + (", ..." if len(unparsed) > 3 else "")
        warns.append(
            f"{len(unparsed)} image name(s) do not follow the LIVECell pattern "
            f"<CellType>_Phase_<Well>_<Loc>_<Time>_<Crop>.tif and form one group each ({ex})"
        )
    assign = ["train"] * len(images)
    folds: dict[str, tuple[int, int]] = {}
    pool = list(range(len(images)))
    for name, frac in (("test", test), ("val", val / (1.0 - test))):
        if frac <= 0:
            continue
        taken, folds[name], stratified = _carve(pool, labels, groups, frac, seed)
        if not stratified:
            warns.append(f"{name}: no cell type has 2 images left to stratify by; carved by groups only")
        for i in taken:
            assign[i] = name
        pool = [i for i in pool if i not in taken]
    splits = [
        s for s in SPLIT_NAMES if s == "train" or (s == "val" and val > 0) or (s == "test" and test > 0)
    ]

    # repair: a cell type with w wells must be in min(w, number of splits) splits, train among them
    group_split: dict[str, str] = {}
    group_size: Counter = Counter(groups)
    group_type: dict[str, str] = {}
    for i, g in enumerate(groups):
        group_split[g] = assign[i]
        group_type[g] = labels[i]
    moved: list[dict[str, str]] = []
    by_type: dict[str, list[str]] = defaultdict(list)
    for g, t in group_type.items():
        by_type[t].append(g)
    for t in sorted(by_type):
        gs = sorted(by_type[t])
        required = min(len(gs), len(splits))
        while True:
            per = {s: [g for g in gs if group_split[g] == s] for s in splits}
            covered = [s for s in splits if per[s]]
            if len(covered) >= required and per["train"]:
                break
            to = next(s for s in splits if not per[s])  # train first, then val, then test
            donors = [x for x in splits if len(per[x]) >= 2] or covered
            donor = max(donors, key=lambda x: (len(per[x]), -splits.index(x)))
            g = min(per[donor], key=lambda x: (group_size[x], x))  # the smallest well moves
            group_split[g] = to
            moved.append({"group": g, "cell_type": t, "from": donor, "to": to})
        if len(gs) < len(splits):
            where = sorted({group_split[g] for g in gs}, key=SPLIT_NAMES.index)
            warns.append(
                f"cell type {t} has only {len(gs)} well(s)/group(s): it cannot be in all of "
                f"{'/'.join(splits)} (it is in {'/'.join(where)})"
            )
    split_of = {ids[i]: group_split[groups[i]] for i in range(len(images))}
    n_in = Counter(split_of.values())
    for name, asked in (("val", val), ("test", test)):
        got = n_in[name] / len(images)
        if asked > 0 and abs(got - asked) > max(0.05, 0.25 * asked):
            warns.append(
                f"{name} holds {got:.0%} of the images (asked {asked:.0%}): wells are indivisible"
                + (" and every cell type with enough wells is put in every split" if moved else "")
            )
    group_by_id = {ids[i]: groups[i] for i in range(len(images))}
    return SplitResult(
        merged=merged,
        split_of=split_of,
        group_of=group_by_id,
        val=val,
        test=test,
        seed=seed,
        warnings=warns,
        moved_groups=moved,
        folds=folds,
    )


def split_datasets(
    json_paths: Sequence[str | os.PathLike[str]], val: float = 0.2, test: float = 0.0, seed: int = 0
) -> SplitResult:
    """Merge LIVECell jsons, drop duplicates and split them by (cell type, well), stratified by cell type.

    ``val`` and ``test`` are fractions of all (deduplicated) images; the achieved fractions are
    multiples of 1/k of StratifiedGroupKFold folds and depend on well sizes (see
    ``SplitResult.report()['fractions']``). The same inputs and ``seed`` always give the same split,
    whatever the order of ``json_paths``.
    """
    return split_merged(merge_datasets(json_paths), val=val, test=test, seed=seed)


# --------------------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------------------
def write_coco_json(path: str | os.PathLike[str], d: dict, chunk: int = 20000) -> None:
    """Write a COCO dict compactly and atomically, in chunks (no giant string for 1 GB of annotations)."""
    dumps = json.JSONEncoder(separators=(",", ":")).encode  # C encoder, one chunk at a time
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write("{")
        for key in [k for k in d if k != "annotations"]:
            f.write(f"{dumps(key)}:{dumps(d[key])},")
        anns = d.get("annotations", [])
        f.write('"annotations":[')
        for start in range(0, len(anns), chunk):
            if start:
                f.write(",")
            f.write(dumps(anns[start : start + chunk])[1:-1])
        f.write("]}\n")


def print_split_table(result: SplitResult, console: Any = None) -> None:
    """Print images / wells / cells per cell type and split as a rich table (on ``console``)."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    table = Table(title=f"split (val={result.val}, test={result.test}, seed={result.seed})")
    for name, justify in (("cell type", "left"), ("split", "left"), ("images", "right"), ("wells", "right")):
        table.add_column(name, justify=justify)
    table.add_column("cells", justify="right")
    table.add_column("share of images", justify="right")
    rows = result.rows()
    type_total: dict[str, int] = {}
    for r in rows:
        type_total[r.cell_type] = type_total.get(r.cell_type, 0) + r.images
    for i, r in enumerate(rows):
        last = i + 1 == len(rows) or rows[i + 1].cell_type != r.cell_type
        share = r.images / type_total[r.cell_type] if type_total[r.cell_type] else 0.0
        style = "red" if r.images == 0 else None
        table.add_row(
            r.cell_type if r.split == result.splits[0] else "",
            r.split,
            f"{r.images:,}",
            f"{r.wells:,}",
            f"{r.cells:,}",
            f"{share:.0%}",
            end_section=last,
            style=style,
        )
    rep = result.report()
    for s in result.splits:
        t = rep["totals"][s]
        table.add_row(
            "all" if s == result.splits[0] else "",
            s,
            f"{t['images']:,}",
            f"{t['wells']:,}",
            f"{t['cells']:,}",
            f"{rep['fractions'][s]:.0%}",
            style="bold",
        )
    console.print(table)


def report_markdown(result: SplitResult) -> str:
    """The split table (images / wells / cells per cell type and split) as Markdown."""
    splits = result.splits
    head = "| cell type | " + " | ".join(f"{s} images | {s} wells | {s} cells" for s in splits) + " |"
    sep = "|---|" + "---:|" * (3 * len(splits))
    by_type: dict[str, dict[str, SplitRow]] = defaultdict(dict)
    for r in result.rows():
        by_type[r.cell_type][r.split] = r
    lines = [head, sep]
    for t in sorted(by_type):
        cells = [f"{by_type[t][s].images} | {by_type[t][s].wells} | {by_type[t][s].cells}" for s in splits]
        lines.append(f"| {t} | " + " | ".join(cells) + " |")
    tot = result.report()["totals"]
    lines.append(
        "| **all** | "
        + " | ".join(f"{tot[s]['images']} | {tot[s]['wells']} | {tot[s]['cells']}" for s in splits)
        + " |"
    )
    rep = result.report()
    out = [
        f"# Split report (val={result.val}, test={result.test}, seed={result.seed})",
        "",
        "Groups: cell type + well; stratified by cell type (StratifiedGroupKFold).",
        "",
        *lines,
        "",
        "Fractions of images: " + ", ".join(f"{s} {rep['fractions'][s]:.3f}" for s in splits),
        "",
        f"Duplicate images removed: {sum(len(d.dropped) for d in result.merged.duplicates)} "
        f"({len(result.merged.duplicates)} file names)",
    ]
    if result.warnings:
        out += ["", "Warnings:", *[f"- {w}" for w in result.warnings]]
    return "\n".join(out) + "\n"


def write_splits(result: SplitResult, out_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """Write ``train.json``, ``val.json``, ``test.json`` (those produced), ``split_report.json`` and
    ``split_report.md`` into ``out_dir``, each atomically. Returns {name: path}."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputFileError(out, "exists and is not a folder")
    written: dict[str, Path] = {}
    for s in result.splits:
        p = out / f"{s}.json"
        write_coco_json(p, result.coco_dict(s))
        written[s] = p
    written["report"] = out / "split_report.json"
    write_json_atomic(written["report"], result.report())
    written["report_md"] = out / "split_report.md"
    with atomic_path(written["report_md"]) as tmp:
        tmp.write_text(report_markdown(result))
    return written
