"""Reading LIVECell COCO annotation files and rasterizing their annotations into instance labels.

Handles the real-world quirks of LIVECell's json files:

* ``annotations`` is a list in the official files and a dict keyed by annotation id in others
  (the Kaggle mirror); both are read.
* duplicate image entries (one ``file_name`` under two ids): one entry is kept (the first), the
  annotations of the others are moved onto it, and the duplicates are reported.
* truncated files, HTML error pages saved as ``.json``, files that are JSON but not COCO: one-line
  :class:`~livecell_seg.errors.InputFileError` naming the file.

pycocotools is imported inside functions only (it is not needed to read a json).
"""

from __future__ import annotations

import json
import math
import os
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputFileError
from ..io import check_image_size, check_input_file

#: default minimum number of visible pixels a cell must keep after overlaps are resolved
DEFAULT_MIN_FRAGMENT = 10

#: the eight LIVECell cell types, as spelled in the file names
CELL_TYPES = ("A172", "BT474", "BV2", "Huh7", "MCF7", "SHSY5Y", "SkBr3", "SKOV3")


# --------------------------------------------------------------------------------------------------
# the dataset object
# --------------------------------------------------------------------------------------------------
@dataclass
class CocoDataset:
    """A COCO annotation file, indexed by image (one pass, no pycocotools index).

    ``images`` holds one entry per ``file_name`` (duplicates removed), ``anns_by_image`` maps every
    kept image id to its annotations (images without annotations map to an empty list).
    """

    path: Path | None
    images: list[dict]
    anns_by_image: dict[int, list[dict]]
    categories: list[dict]
    duplicates: list[tuple[str, list[int]]]
    info: dict
    #: annotations whose ``image_id`` is not an image of the file (ignored)
    orphan_annotations: int = 0
    _by_file: dict[str, dict] = field(default_factory=dict, repr=False)
    _by_id: dict[int, dict] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if not self._by_file:
            self._by_file = {im["file_name"]: im for im in self.images}
        if not self._by_id:
            self._by_id = {int(im["id"]): im for im in self.images}

    @property
    def n_annotations(self) -> int:
        """Number of annotations attached to kept images."""
        return sum(len(v) for v in self.anns_by_image.values())

    def image_by_file(self, file_name: str) -> dict | None:
        """The image entry with this file name (a bare name; folders are ignored), or None."""
        return self._by_file.get(file_name) or self._by_file.get(Path(file_name).name)

    def image_by_id(self, image_id: int) -> dict | None:
        """The kept image entry with this id (ids of dropped duplicates are not found), or None."""
        return self._by_id.get(int(image_id))

    def to_coco_dict(self, image_ids: Iterable[int] | None = None) -> dict:
        """A valid COCO dict (``annotations`` as a list) for all images or the given subset of ids.

        Unknown ids raise KeyError. Images keep their order in the file.
        """
        if image_ids is None:
            images = list(self.images)
        else:
            wanted = {int(i) for i in image_ids}
            missing = wanted - set(self._by_id)
            if missing:
                raise KeyError(f"image ids not in the dataset: {sorted(missing)[:5]}")
            images = [im for im in self.images if int(im["id"]) in wanted]
        anns: list[dict] = []
        for im in images:
            anns.extend(self.anns_by_image.get(int(im["id"]), []))
        return {
            "info": dict(self.info),
            "licenses": [],
            "categories": [dict(c) for c in self.categories],
            "images": [dict(im) for im in images],
            "annotations": anns,
        }


# --------------------------------------------------------------------------------------------------
# loading
# --------------------------------------------------------------------------------------------------
def _check_json_file(p: Path) -> None:
    """Raise InputFileError for a missing/empty file or an HTML page saved as json."""

    if p.is_dir():
        raise InputFileError(p, "is a folder, expected a COCO .json file")
    check_input_file(p)
    size = p.stat().st_size
    if size == 0:
        raise InputFileError(p, "file is empty")
    with open(p, "rb") as f:
        head = f.read(512)
    stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if stripped[:1] == b"<":
        low = stripped[:200].lower()
        kind = "an HTML page" if (b"html" in low or b"<!doctype" in low) else "XML/HTML"
        raise InputFileError(p, f"is {kind}, not JSON (a failed or blocked download?)")
    if stripped[:1] not in (b"{", b"["):
        raise InputFileError(p, "is not JSON (does not start with '{')")


def _decode_error(p: Path, e: json.JSONDecodeError, size: int) -> InputFileError:
    """Turn a JSONDecodeError into a one-line error; a truncated file fails at its very end."""
    truncated = "Unterminated string" in e.msg or e.pos >= size
    if not truncated:
        # e.pos counts characters (= bytes for ASCII json): truncated when only blanks follow it
        with open(p, "rb") as f:
            f.seek(e.pos)
            truncated = f.read(4096).strip() == b"" and e.pos + 4096 >= size
    if truncated:
        return InputFileError(
            p, f"truncated JSON (file ends unexpectedly after {size:,} bytes; re-download it)"
        )
    return InputFileError(p, f"invalid JSON at line {e.lineno} column {e.colno}: {e.msg}")


def load_coco(path: str | os.PathLike[str]) -> CocoDataset:
    """Read a COCO/LIVECell annotation json (annotations as a list or a dict keyed by id).

    Raises :class:`InputFileError` (one line naming the file) for a missing, empty, truncated,
    non-JSON (e.g. an HTML error page) or non-COCO file. Loads the whole file with :func:`json.load`;
    for the 1 GB LIVECell training json use :mod:`livecell_seg.data.convert`, which streams it.
    """
    p = Path(path)
    _check_json_file(p)
    size = p.stat().st_size
    try:
        with open(p, "rb") as f:
            d = json.load(f)
    except json.JSONDecodeError as e:
        raise _decode_error(p, e, size) from None
    except UnicodeDecodeError as e:
        raise InputFileError(p, f"not UTF-8 text ({e.reason} at byte {e.start})") from None
    except MemoryError:
        raise InputFileError(p, "too large to load in memory") from None
    except RecursionError:
        raise InputFileError(p, "JSON nested too deeply (not a COCO annotation file)") from None
    return coco_from_dict(d, path=p)


#: ids are 64-bit signed integers (pycocotools, faster-coco-eval and numpy store them so)
ID_RANGE = (-(2**63), 2**63 - 1)


def short_repr(value: Any, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters: a message names a bad value, never dumps it."""
    r = repr(value)
    return r if len(r) <= limit else f"{r[: limit - 15]}... ({len(r):,} chars)"


def parse_id(value: Any, p: object, what: str) -> int:
    """A COCO id (an integer, a whole float or a string of digits) as an int within
    :data:`ID_RANGE`; else a one-line :class:`InputFileError` naming ``what``."""
    v: int | None = None
    if isinstance(value, bool):
        v = None
    elif isinstance(value, int):
        v = value
    elif isinstance(value, float) and math.isfinite(value) and value.is_integer():
        v = int(value)
    elif isinstance(value, str) and re.fullmatch(r"\s*-?\d{1,25}\s*", value):
        v = int(value)
    if v is None:
        raise InputFileError(p, f"{what} has a non-integer id {short_repr(value)}")
    if not ID_RANGE[0] <= v <= ID_RANGE[1]:
        raise InputFileError(p, f"{what} has the id {short_repr(value)}, outside the 64-bit range of ids")
    return v


def _as_int_id(value: Any, p: object, what: str) -> int:
    return parse_id(value, p, what)


def check_file_name(name: Any, p: object, what: str) -> str:
    """A COCO ``file_name``: a non-empty string without NUL or other control characters (no file
    system takes them; a NUL used to end in a traceback); else a one-line InputFileError."""
    if not isinstance(name, str) or not name:
        raise InputFileError(p, f"{what} has an invalid file_name {short_repr(name)}")
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise InputFileError(p, f"{what} has a file_name with a control character: {short_repr(name)}")
    if len(os.fsencode(name)) > 4096:
        raise InputFileError(p, f"{what} has a file_name of {len(name):,} characters")
    return name


def _is_whole_number(v: Any) -> bool:
    if isinstance(v, bool):
        return False
    return isinstance(v, int) or (isinstance(v, float) and math.isfinite(v) and v.is_integer())


def check_images(images: Any, p: object) -> list[dict]:
    """Validate the ``images`` list of a COCO dict; return it. Raises InputFileError.

    An image larger than :func:`livecell_seg.io.max_image_pixels` is refused (its label image
    could not be allocated).
    """
    if not isinstance(images, list):
        raise InputFileError(p, "not a COCO annotation file ('images' is not a list)")
    names_by_id: dict[int, str] = {}
    for i, im in enumerate(images):
        if not isinstance(im, dict):
            raise InputFileError(p, f"images[{i}] is not an object")
        for key in ("id", "file_name", "width", "height"):
            if key not in im:
                raise InputFileError(p, f"images[{i}] has no '{key}'")
        iid = parse_id(im["id"], p, f"images[{i}]")
        name = check_file_name(im["file_name"], p, f"images[{i}]")
        other = names_by_id.setdefault(iid, name)
        if other != name:  # their annotations could not be told apart: each would get the other's cells
            raise InputFileError(
                p, f"image id {iid} is used by two images, {short_repr(other)} and {short_repr(name)}"
            )
        w, h = im["width"], im["height"]
        if not all(_is_whole_number(v) for v in (w, h)):
            raise InputFileError(
                p,
                f"images[{i}] ({im['file_name']}) has an invalid width/height {short_repr(w)}x{short_repr(h)}",
            )
        w, h = int(w), int(h)
        if w <= 0 or h <= 0:
            raise InputFileError(p, f"images[{i}] ({im['file_name']}) has size {w}x{h}")
        check_image_size(p, h, w, what=f"images[{i}] ({im['file_name']})")
    return images


def dedupe_images(images: list[dict]) -> tuple[list[dict], dict[int, int], list[tuple[str, list[int]]]]:
    """Drop duplicate image entries (same file_name; the first one is kept).

    Returns (kept images, {any image id -> kept id}, [(file_name, [kept_id, dropped ids...])]).
    """
    kept: list[dict] = []
    first_by_name: dict[str, int] = {}
    remap: dict[int, int] = {}
    dup_ids: dict[str, list[int]] = {}
    for im in images:
        iid = int(im["id"])
        name = im["file_name"]
        if name in first_by_name:
            k = first_by_name[name]
            remap[iid] = k
            if iid != k:
                dup_ids.setdefault(name, [k]).append(iid)
            continue
        first_by_name[name] = iid
        remap[iid] = iid
        kept.append(im)
    duplicates = [(name, ids) for name, ids in dup_ids.items()]
    return kept, remap, duplicates


def coco_from_dict(d: dict, path: str | os.PathLike[str] | None = None) -> CocoDataset:
    """Index an already-parsed COCO dict (see :func:`load_coco`). Single pass over annotations."""
    p: object = Path(path) if path is not None else "<COCO dict>"
    if not isinstance(d, dict) or "images" not in d or "annotations" not in d:
        raise InputFileError(p, "not a COCO annotation file (no 'images' and 'annotations')")
    images = check_images(d["images"], p)
    raw_anns = d["annotations"]
    if isinstance(raw_anns, dict):  # Kaggle-style: {annotation id: annotation}
        ann_iter: Iterable[tuple[Any, Any]] = raw_anns.items()
    elif isinstance(raw_anns, list):
        ann_iter = ((None, a) for a in raw_anns)
    else:
        raise InputFileError(p, "not a COCO annotation file ('annotations' is neither a list nor a dict)")
    kept, remap, duplicates = dedupe_images(images)
    anns_by_image: dict[int, list[dict]] = {int(im["id"]): [] for im in kept}
    orphans = 0
    for key, a in ann_iter:
        if not isinstance(a, dict) or "image_id" not in a:
            raise InputFileError(
                p, f"annotation {key if key is not None else ''} has no image_id".replace("  ", " ")
            )
        iid = parse_id(a["image_id"], p, "an annotation's image_id")
        if "id" in a:
            parse_id(a["id"], p, "an annotation")
        k = remap.get(iid)
        if k is None:
            orphans += 1
            continue
        if k != iid or ("id" not in a and key is not None):
            a = dict(a)
            a["image_id"] = k
            if "id" not in a and key is not None:
                a["id"] = _as_int_id(key, p, "annotation")
        anns_by_image[k].append(a)
    cats = d.get("categories") or [{"id": 1, "name": "cell", "supercategory": "cell"}]
    info = d.get("info") or {}
    return CocoDataset(
        path=Path(path) if path is not None else None,
        images=kept,
        anns_by_image=anns_by_image,
        categories=list(cats),
        duplicates=duplicates,
        info=dict(info) if isinstance(info, dict) else {"info": info},
        orphan_annotations=orphans,
    )


# --------------------------------------------------------------------------------------------------
# LIVECell file names
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LivecellName:
    """The parts of a LIVECell file name ``<CellType>_Phase_<Well>_<Location>_<Timestamp>_<Crop>.tif``."""

    cell_type: str
    well: str
    location: str
    timestamp: str
    crop: str


_NAME_RE = re.compile(
    r"^(?P<cell_type>[A-Za-z0-9]+)_Phase_(?P<well>[A-Za-z]+\d+)_(?P<location>\d+)_"
    r"(?P<timestamp>\d+d\d+h\d+m)_(?P<crop>\d+)(?:\.[A-Za-z]+)?$"
)


def parse_livecell_name(file_name: str) -> LivecellName | None:
    """Parse a LIVECell image file name (folders ignored); None if it does not follow the pattern.

    >>> parse_livecell_name("A172_Phase_C7_1_02d16h00m_2.tif").well
    'C7'
    """
    m = _NAME_RE.match(Path(str(file_name)).name)
    if m is None:
        return None
    return LivecellName(**m.groupdict())


def cell_type_of(file_name: str) -> str:
    """The cell type of a LIVECell file name, or ``'unknown'``."""
    n = parse_livecell_name(file_name)
    return n.cell_type if n is not None else "unknown"


# --------------------------------------------------------------------------------------------------
# locating image files
# --------------------------------------------------------------------------------------------------
_INDEX_LOCK = threading.Lock()
_INDEX: dict[str, dict[str, Path]] = {}


def _build_index(root: Path) -> dict[str, Path]:
    index: dict[str, Path] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for fn in filenames:
            index.setdefault(fn, Path(dirpath) / fn)
    return index


def find_image(images_dir: str | os.PathLike[str], file_name: str) -> Path:
    """Locate an image file under ``images_dir``.

    Works with the official layout (``images/livecell_train_val_images/<CellType>/x.tif`` and
    ``livecell_test_images/...``, ``images_dir`` being any of these folders), the flat layout of
    some mirrors and the bundled sample (``images/livecell_train_val_images/x.tif``) and a plain
    flat folder. A file-name index of each folder is built once and cached (rebuilt once on a miss).
    Raises :class:`InputFileError` if the image is not there.
    """
    root = Path(images_dir)
    name = Path(file_name).name
    direct = root / file_name
    if direct.is_file():
        return direct
    ct = cell_type_of(name)
    for cand in (
        root / name,
        root / ct / name,
        root / "livecell_train_val_images" / ct / name,
        root / "livecell_test_images" / ct / name,
        root / "livecell_train_val_images" / name,
        root / "livecell_test_images" / name,
    ):
        if cand.is_file():
            return cand
    if not root.is_dir():
        raise InputFileError(root, "images folder not found")
    key = str(root.resolve())
    with _INDEX_LOCK:
        index = _INDEX.get(key)
        fresh = index is None
        if index is None:
            index = _INDEX[key] = _build_index(root)
    hit = index.get(name)
    if hit is not None and hit.is_file():
        return hit
    if not fresh:  # files may have been added since the index was built
        with _INDEX_LOCK:
            index = _INDEX[key] = _build_index(root)
        hit = index.get(name)
        if hit is not None:
            return hit
    raise InputFileError(root / name, f"image file not found under {root}")


# --------------------------------------------------------------------------------------------------
# rasterization
# --------------------------------------------------------------------------------------------------
@dataclass
class RasterStats:
    """What :func:`rasterize_annotations` did with the annotations of one or more images."""

    annotations: int = 0  #: annotations seen
    cells: int = 0  #: cells written (labels 1..cells)
    degenerate: int = 0  #: skipped: < 3 points, zero area, empty RLE or entirely outside the image
    duplicate: int = 0  #: skipped: exactly the same contour as an earlier annotation of the image
    hidden: int = 0  #: dropped: fewer than ``min_fragment`` visible pixels left after overlaps
    split: int = 0  #: cells cut in pieces by smaller cells on top (largest piece kept)
    fragment_pixels: int = 0  #: pixels of the smaller pieces of split cells, set to background
    overlap_pixels: int = 0  #: extra claims on pixels: sum of cell areas minus the area of their union

    def add(self, other: RasterStats) -> None:
        """Accumulate another image's statistics."""
        for k in self.__dataclass_fields__:
            setattr(self, k, getattr(self, k) + getattr(other, k))

    def as_dict(self) -> dict[str, int]:
        """The counts as a plain dict."""
        return {k: int(getattr(self, k)) for k in self.__dataclass_fields__}


@dataclass
class RasterResult:
    """Instance labels of one image and the statistics of how they were made."""

    labels: np.ndarray
    stats: RasterStats
    #: union of all rasterized annotations (hidden cells and cut-off pieces included), bool
    foreground: np.ndarray | None = None


#: polygons are clipped to the image plus this margin (pixels) before rasterization
CLIP_MARGIN = 2.0


def _clip_part(a: np.ndarray, x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    """Sutherland-Hodgman clip of a flat closed polygon to the box ``[x0, x1] x [y0, y1]``."""
    pts = a.reshape(-1, 2)
    for axis, bound, keep_above in ((0, x0, True), (0, x1, False), (1, y0, True), (1, y1, False)):
        if pts.shape[0] == 0:
            break
        v = pts[:, axis]
        inside = v >= bound if keep_above else v <= bound
        if inside.all():
            continue
        prev = np.roll(pts, 1, axis=0)
        prev_in = np.roll(inside, 1)
        out: list[np.ndarray] = []
        for p, q, p_in, q_in in zip(prev, pts, prev_in, inside):  # edge p -> q
            if q_in != p_in:
                t = (bound - p[axis]) / (q[axis] - p[axis])
                out.append(p + t * (q - p))
            if q_in:
                out.append(q)
        pts = np.array(out, dtype=np.float64).reshape(-1, 2)
    return pts.ravel()


def polygon_parts(seg: Any, height: int, width: int) -> list[np.ndarray] | None:
    """The rasterizable parts of a COCO polygon segmentation, safe to hand to pycocotools.

    Returns flat float64 ``[x0, y0, x1, y1, ...]`` parts of at least 3 points (an empty list when
    nothing is left: fewer than 3 points), or None when a coordinate is not a finite number.
    Parts reaching more than :data:`CLIP_MARGIN` pixels outside the image are clipped to that box
    first (pycocotools rasterizes every edge point by point: a coordinate of 1e9 would exhaust the
    memory, a NaN crashes it); parts inside it are returned unchanged, so their masks stay
    pixel-identical to ``annToMask``.
    """
    if not isinstance(seg, (list, tuple)):
        return None
    if seg and not isinstance(seg[0], (list, tuple)):  # a single flat polygon
        seg = [seg]
    x0, y0 = -CLIP_MARGIN, -CLIP_MARGIN
    x1, y1 = width + CLIP_MARGIN, height + CLIP_MARGIN
    parts = []
    for part in seg:
        if not isinstance(part, (list, tuple)):
            return None
        if any(isinstance(v, (bool, str)) for v in part):
            return None
        try:
            a = np.array(part, dtype=np.float64)
        except (TypeError, ValueError, OverflowError):
            return None
        if a.ndim != 1 or not np.isfinite(a).all():
            return None
        a = a[: a.size // 2 * 2]
        if a.size < 6:
            continue
        xs, ys = a[0::2], a[1::2]
        if xs.min() < x0 or xs.max() > x1 or ys.min() < y0 or ys.max() > y1:
            a = _clip_part(a, x0, y0, x1, y1)
            if a.size < 6:
                continue
        parts.append(a)
    return parts


def _rle_string_counts(s: bytes) -> np.ndarray | None:
    """The run lengths of a compressed COCO RLE string (as pycocotools' ``rleFrString`` reads it),
    or None when the string is malformed (bad characters, truncated, values beyond 32 bits)."""
    c = np.frombuffer(s, dtype=np.uint8).astype(np.int64) - 48
    if c.size == 0:
        return np.zeros(0, np.int64)
    if (c < 0).any() or (c > 63).any():
        return None
    more = (c & 0x20) != 0
    if more[-1]:
        return None
    last = ~more
    group = np.concatenate(([0], np.cumsum(last[:-1])))
    starts = np.concatenate(([0], np.flatnonzero(last)[:-1] + 1))
    k = np.arange(c.size) - starts[group]
    if k.max() > 6:  # a valid run length (< 2**31) takes at most 7 characters
        return None
    x = np.zeros(int(group[-1]) + 1, np.int64)
    np.add.at(x, group, (c & 0x1F) << (5 * k))
    ends = np.flatnonzero(last)
    neg = (c[ends] & 0x10) != 0
    x[neg] |= np.left_shift(np.int64(-1), 5 * (k[ends][neg] + 1))
    counts = x.copy()
    if counts.size > 3:  # counts[m] = x[m] + counts[m - 2] for m > 2
        counts[3::2] = x[1] + np.cumsum(x[3::2])
    if counts.size > 4:
        counts[4::2] = x[2] + np.cumsum(x[4::2])
    return counts


def checked_rle(seg: Any, height: int, width: int) -> dict | None:
    """A COCO RLE segmentation (compressed or uncompressed counts) as a compressed RLE dict
    ``{"size": [height, width], "counts": bytes}`` that pycocotools can decode safely, or None when
    it is malformed: other size, bad counts, runs that do not add up to ``height * width``
    (pycocotools would write past its buffer)."""
    if not isinstance(seg, dict):
        return None
    size = seg.get("size", [height, width])
    try:
        if [int(v) for v in size] != [height, width]:
            return None
    except (TypeError, ValueError, OverflowError):
        return None
    counts = seg.get("counts")
    n = height * width
    if isinstance(counts, list):
        if not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= n for v in counts):
            return None
        if sum(counts) != n:
            return None
        from pycocotools import mask as mask_utils

        rle = mask_utils.frPyObjects({"size": [height, width], "counts": counts}, height, width)
        return {"size": [height, width], "counts": rle["counts"]}
    if isinstance(counts, str):
        try:
            counts = counts.encode("ascii")
        except UnicodeEncodeError:
            return None
    if not isinstance(counts, bytes) or b"\0" in counts:
        return None
    runs = _rle_string_counts(counts)
    if runs is None or (runs < 0).any() or (runs > n).any() or int(runs.sum()) != n:
        return None
    return {"size": [height, width], "counts": counts}


def _shift_polygon(a: np.ndarray, x0: int, y0: int) -> np.ndarray:
    """Translate a flat polygon by (-x0, -y0) so that pycocotools rasterizes it pixel-identically.

    pycocotools first maps every coordinate to ``(int)(5 * v + 0.5)``; shifting the float
    coordinates would round differently for some values (e.g. ``x.1 * 5``). So the shift is done on
    those integers and the result passed as ``k / 5``, which maps back to exactly ``k``.
    """
    if x0 and y0:
        b = np.trunc(a.reshape(-1, 2) * 5.0 + 0.5)
        b -= (5.0 * x0, 5.0 * y0)
        b /= 5.0
        return b.ravel()
    a = a.copy()
    if x0:
        a[0::2] = (np.trunc(5.0 * a[0::2] + 0.5) - 5.0 * x0) / 5.0
    if y0:
        a[1::2] = (np.trunc(5.0 * a[1::2] + 0.5) - 5.0 * y0) / 5.0
    return a


def _rasterize_one(ann: dict, height: int, width: int) -> tuple[np.ndarray, int, int] | None:
    """Mask of one annotation restricted to its bounding box: (mask bool (h, w), y0, x0), or None.

    Pixel-identical to pycocotools' ``annToMask`` on the whole image.
    """
    from pycocotools import mask as mask_utils

    seg = ann.get("segmentation")
    if isinstance(seg, dict):  # RLE (compressed str/bytes counts or uncompressed list counts)
        rle = checked_rle(seg, height, width)
        if rle is None:  # a malformed RLE is a degenerate annotation
            return None
        m = mask_utils.decode(rle)
        ys, xs = np.nonzero(m)
        if ys.size == 0:
            return None
        y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        return m[y0:y1, x0:x1].astype(bool), int(y0), int(x0)
    parts = polygon_parts(seg, height, width)
    if not parts:
        return None
    if len(parts) == 1:
        a = parts[0]
        xs, ys = a[0::2], a[1::2]
        minx, maxx, miny, maxy = xs.min(), xs.max(), ys.min(), ys.max()
    else:
        minx = min(a[0::2].min() for a in parts)
        maxx = max(a[0::2].max() for a in parts)
        miny = min(a[1::2].min() for a in parts)
        maxy = max(a[1::2].max() for a in parts)
    # integer-aligned crop with a margin (crops that touch the image border clip there exactly
    # like a full-image rasterization)
    x0 = max(0, math.floor(minx) - 1)
    y0 = max(0, math.floor(miny) - 1)
    x1 = min(width, math.ceil(maxx) + 2)
    y1 = min(height, math.ceil(maxy) + 2)
    if x1 <= x0 or y1 <= y0:
        return None
    shifted = [_shift_polygon(a, x0, y0) for a in parts]
    rles = mask_utils.frPyObjects(shifted, y1 - y0, x1 - x0)
    m = mask_utils.decode(mask_utils.merge(rles) if len(rles) > 1 else rles[0])
    return m.view(bool), y0, x0


def _seg_key(seg: Any) -> Any:
    """A hashable key of a segmentation (exact duplicates share it), or None when there is none."""
    try:
        if isinstance(seg, dict):
            c = seg.get("counts")
            key: Any = ("rle", tuple(c) if isinstance(c, list) else c)
        else:
            key = tuple(tuple(p) if isinstance(p, list) else p for p in seg)
        hash(key)  # nested lists (junk) are not hashable
    except TypeError:
        return None
    return key


_STRUCT4 = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], dtype=bool)


def rasterize_annotations(
    anns: list[dict], height: int, width: int, min_fragment: int = DEFAULT_MIN_FRAGMENT
) -> RasterResult:
    """Rasterize one image's annotations into uint16 instance labels, with statistics.

    Overlap rule (LIVECell polygons overlap): every annotation is rasterized exactly like
    pycocotools' ``annToMask`` (``frPyObjects`` + ``decode``; polygons, multi-part polygons,
    compressed and uncompressed RLE), on its bounding box only. Cells are painted from the largest
    to the smallest, so a small cell is never hidden under a large one; the overlap goes to the
    smaller cell. A cell cut into pieces by smaller cells on top keeps its largest 4-connected piece
    (the others become background); a cell left with fewer than ``min_fragment`` visible pixels is
    dropped. Degenerate annotations (fewer than 3 points, zero area, malformed or mis-sized RLE,
    outside the image) and exact duplicate contours are skipped. Labels are 1..n in annotation order.
    """
    stats = RasterStats(annotations=len(anns))
    masks: list[tuple[np.ndarray, int, int, int]] = []  # (mask, y0, x0, area), in annotation order
    seen: set = set()
    for a in anns:
        key = _seg_key(a.get("segmentation"))
        if key is not None and key in seen:
            stats.duplicate += 1
            continue
        r = _rasterize_one(a, height, width)
        area = int(np.count_nonzero(r[0])) if r is not None else 0
        if area == 0:
            stats.degenerate += 1
            continue
        if key is not None:
            seen.add(key)
        masks.append((r[0], r[1], r[2], area))
    if len(masks) > np.iinfo(np.uint16).max:
        raise ValueError(f"{len(masks)} cells in one image: more than uint16 labels can hold")
    canvas = np.zeros((height, width), dtype=np.uint16)
    # largest first, ties in annotation order; provisional label = position in `masks` + 1
    order = sorted(range(len(masks)), key=lambda j: (-masks[j][3], j))
    for j in order:
        m, y0, x0, _ = masks[j]
        canvas[y0 : y0 + m.shape[0], x0 : x0 + m.shape[1]][m] = j + 1
    fg = canvas > 0  # union of all masks (nothing has been removed yet)
    stats.overlap_pixels = sum(x[3] for x in masks) - int(np.count_nonzero(fg))
    keep = np.zeros(len(masks) + 1, dtype=bool)
    min_px = max(1, min_fragment)
    for j, (m, y0, x0, area) in enumerate(masks):
        lab = j + 1
        sub = canvas[y0 : y0 + m.shape[0], x0 : x0 + m.shape[1]]
        vis = int(np.count_nonzero(sub[m] == lab))
        if vis < area and vis >= min_px:  # partly covered: maybe cut in pieces
            from scipy import ndimage

            cc, n = ndimage.label(sub == lab, structure=_STRUCT4)
            if n > 1:
                sizes = np.bincount(cc.ravel())
                sizes[0] = 0
                biggest = int(sizes.argmax())
                stats.split += 1
                stats.fragment_pixels += int(sizes.sum() - sizes[biggest])
                sub[(cc > 0) & (cc != biggest)] = 0
                vis = int(sizes[biggest])
        if vis < min_px:
            stats.hidden += 1
            continue
        keep[lab] = True
    stats.cells = int(np.count_nonzero(keep))
    if stats.cells == len(masks):  # provisional labels are already 1..n in annotation order
        labels = canvas
    else:
        lut = np.zeros(len(masks) + 1, dtype=np.uint16)
        kept_idx = np.flatnonzero(keep)
        lut[kept_idx] = np.arange(1, kept_idx.size + 1, dtype=np.uint16)
        labels = lut[canvas]
    return RasterResult(labels=labels, stats=stats, foreground=fg)


def annotations_to_labels(
    anns: list[dict], height: int, width: int, min_fragment: int = DEFAULT_MIN_FRAGMENT
) -> np.ndarray:
    """uint16 instance labels (0 = background, 1..n in annotation order) of one image's annotations.

    See :func:`rasterize_annotations` for the overlap rule and for the statistics.
    """
    return rasterize_annotations(anns, height, width, min_fragment).labels
