"""Corrected segmentations read back as label images (the inverse of predict's exports; pure).

``predict`` writes cells as label TIFFs (``OUT/<stem>.tif``), ImageJ/Fiji ROI sets
(``OUT/rois/<stem>.zip``) and QuPath GeoJSON (``OUT/<stem>.geojson``), see
:mod:`livecell_seg.inference.outputs`. A user corrects them (napari, Fiji's ROI Manager, QuPath)
and ``finetune`` reads them back here:

- :func:`rasterize` fills polygons the way :func:`~livecell_seg.inference.outputs.cell_outlines`
  traces them: pixel ``(row i, col j)`` belongs to a polygon when its centre ``(j + 0.5, i + 0.5)``
  lies inside, so export → import gives back the same label image (one-piece cells exactly);
- :func:`read_rois_zip`: one cell per ROI, in the zip's order;
- :func:`read_geojson`: one cell per feature (``Polygon`` or ``MultiPolygon``, holes emptied);
- :func:`find_annotation`: the file of an image in a folder, by its stem.

Every problem is a one-line :class:`~livecell_seg.errors.InputFileError` naming the file.
"""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import InputFileError
from ..inference.predict import _short_stem
from ..io import list_images, read_image, read_json

#: annotation kind -> (file suffixes, sub-folders tried besides the folder itself)
KINDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "labels": ((".tif", ".tiff"), ()),
    "rois": ((".zip",), ("rois",)),
    "geojson": ((".geojson", ".json"), ()),
}


def rasterize(
    polygons: Sequence[tuple[np.ndarray, Sequence[np.ndarray]]],
    shape: tuple[int, int],
    labels: np.ndarray,
    value: int,
) -> None:
    """Paint ``value`` into ``labels`` (in place) inside each ``(exterior, holes)`` x/y polygon
    (pixel coordinates: pixel centres at ``+ 0.5``), holes left as they were before."""
    from skimage.draw import polygon as draw_polygon

    for exterior, holes in polygons:
        ext = np.asarray(exterior, dtype=np.float64)
        if ext.ndim != 2 or ext.shape[0] < 3 or ext.shape[1] != 2:
            continue
        keep = labels.copy() if holes else None
        rr, cc = draw_polygon(ext[:, 1] - 0.5, ext[:, 0] - 0.5, shape)
        labels[rr, cc] = value
        for h in holes:
            hole = np.asarray(h, dtype=np.float64)
            if hole.ndim == 2 and hole.shape[0] >= 3 and hole.shape[1] == 2:
                rr, cc = draw_polygon(hole[:, 1] - 0.5, hole[:, 0] - 0.5, shape)
                labels[rr, cc] = keep[rr, cc]  # type: ignore[index]


def _finite(points: np.ndarray, path: Path, what: str) -> np.ndarray:
    if not np.isfinite(points).all():
        raise InputFileError(path, f"{what} has coordinates that are not finite numbers")
    return points


def read_rois_zip(path: str | Path, shape: tuple[int, int]) -> np.ndarray:
    """An ImageJ/Fiji ROI set (zip of ``.roi`` files) as an int32 label image of ``shape``: one cell
    per area ROI (polygon, freehand, traced, rectangle, oval), numbered in the zip's order."""
    import roifile

    p = Path(path)
    labels = np.zeros(shape, np.int32)
    try:
        with zipfile.ZipFile(p) as zf:
            names = [n for n in zf.namelist() if n.lower().endswith(".roi")]
            blobs = [zf.read(n) for n in names]
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
        raise InputFileError(p, f"not a readable zip of ImageJ ROIs ({type(e).__name__})") from None
    if not blobs:
        raise InputFileError(p, "holds no ImageJ .roi file")
    n = 0
    for name, data in zip(names, blobs):
        try:
            roi = roifile.ImagejRoi.frombytes(data)
            pts = np.asarray(roi.coordinates(), dtype=np.float64)
        except Exception as e:  # noqa: BLE001 - roifile raises many kinds on broken bytes
            raise InputFileError(p, f"{name}: not a readable ImageJ ROI ({type(e).__name__})") from None
        if pts.ndim != 2 or pts.shape[0] < 3:
            continue  # a point or line ROI: not a cell
        n += 1
        rasterize([(_finite(pts, p, name), [])], shape, labels, n)
    if n == 0:
        raise InputFileError(p, "holds no area ROI (polygon, freehand, rectangle or oval)")
    return labels


def _rings(geometry: object, p: Path, i: int) -> list[tuple[np.ndarray, list[np.ndarray]]]:
    if not isinstance(geometry, dict):
        raise InputFileError(p, f"feature {i}: no geometry object")
    kind, coords = geometry.get("type"), geometry.get("coordinates")
    if kind == "Polygon":
        polys = [coords]
    elif kind == "MultiPolygon":
        polys = coords if isinstance(coords, list) else None
    else:
        return []  # points, lines: not cells
    out = []
    try:
        for poly in polys or []:
            rings = [_finite(np.asarray(r, dtype=np.float64), p, f"feature {i}") for r in poly]
            if rings and rings[0].ndim == 2 and rings[0].shape[1] == 2:
                out.append((rings[0], rings[1:]))
    except (TypeError, ValueError):
        raise InputFileError(p, f"feature {i}: coordinates are not lists of [x, y] numbers") from None
    return out


def read_geojson(path: str | Path, shape: tuple[int, int]) -> np.ndarray:
    """A GeoJSON file (QuPath's export: a ``FeatureCollection``, a list of features or one feature)
    as an int32 label image of ``shape``: one cell per (Multi)Polygon feature, in file order."""

    p = Path(path)
    doc = read_json(p)  # one-line InputFileError for non-JSON
    if isinstance(doc, dict) and doc.get("type") == "FeatureCollection":
        features = doc.get("features")
    elif isinstance(doc, dict) and doc.get("type") == "Feature":
        features = [doc]
    else:
        features = doc
    if not isinstance(features, list):
        raise InputFileError(p, "not GeoJSON features (expected a FeatureCollection)")
    labels = np.zeros(shape, np.int32)
    n = 0
    for i, f in enumerate(features):
        if not isinstance(f, dict):
            raise InputFileError(p, f"feature {i}: not a JSON object")
        polys = _rings(f.get("geometry"), p, i)
        if polys:
            n += 1
            rasterize(polys, shape, labels, n)
    if n == 0:
        raise InputFileError(p, "holds no polygon feature")
    return labels


def find_annotation(folder: Path, image: Path, kind: str) -> Path:
    """The annotation file of ``image`` in ``folder``: ``<stem><suffix>`` (also under the folder
    predict writes that kind to, e.g. ``rois/``); a one-line error naming what was looked for."""

    suffixes, subs = KINDS[kind]
    stems = dict.fromkeys([image.stem, _short_stem(image.stem)])
    tried = []
    for d in (folder, *(folder / s for s in subs)):
        for stem in stems:
            for suf in suffixes:
                q = d / f"{stem}{suf}"
                tried.append(q)
                if q.is_file() and q.resolve() != image.resolve():
                    return q
    raise InputFileError(
        image, f"no {kind} for this image (looked for {tried[0]}{' and others' if len(tried) > 1 else ''})"
    )


def read_annotation(path: Path, kind: str, shape: tuple[int, int]) -> np.ndarray:
    """Labels of one image from its annotation file of ``kind`` (labels, rois or geojson)."""
    if kind == "labels":
        from ..io import read_labels

        return read_labels(path)
    if kind == "rois":
        return read_rois_zip(path, shape)
    return read_geojson(path, shape)


def load_corrections(inputs: Sequence[str | Path], folder: str | Path, kind: str) -> list:
    """``CorrectedImage`` s of the images in ``inputs`` (files or folders) with their annotations
    of ``kind`` (``labels``, ``rois`` or ``geojson``) in ``folder``; a missing or unreadable file,
    a shape mismatch or labels without a cell is a one-line error naming the file."""
    from .finetune import CorrectedImage

    if kind not in KINDS:
        raise ValueError(f"unknown annotation kind {kind!r}")
    d = Path(folder)
    if not d.is_dir():
        raise InputFileError(d, "no such folder")
    # a labels folder inside an images folder is not an image: leave the annotation files out
    images = [p for p in list_images(list(inputs)) if p.resolve().parent != d.resolve()]
    if not images:
        raise InputFileError(Path(inputs[0]) if inputs else d, "no image found")
    out = []
    for img_path in images:
        img = read_image(img_path)
        ann = find_annotation(d, img_path, kind)
        labels = read_annotation(ann, kind, img.shape)
        if labels.shape != img.shape:
            raise InputFileError(
                ann,
                f"labels of shape {labels.shape[0]}x{labels.shape[1]} do not match the image "
                f"{img_path.name} ({img.shape[0]}x{img.shape[1]})",
            )
        if labels.size == 0 or int(labels.max()) <= 0:
            raise InputFileError(ann, "holds no cell (every pixel is background)")
        out.append(CorrectedImage(img_path.name, img, labels))
    return out
