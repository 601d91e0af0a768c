"""napari reader for what ``livecell-seg predict`` writes.

- ``<stem>.tif`` label images (recognised by their TIFF Software tag, :func:`livecell_seg.io.is_labels_tiff`)
  open as a **Labels** layer; any other TIFF opens as a plain Image layer, so choosing this reader
  as napari's default for ``*.tif`` breaks nothing;
- ``rois/<stem>.zip`` ImageJ/Fiji ROI sets and ``<stem>.geojson`` QuPath detections open as a
  **Shapes** layer of polygon outlines with the cell label (and, for GeoJSON, the measurements) as
  features. napari shapes have no holes: a hole is drawn as an outline of its own.

napari puts pixel centres at integer coordinates, ImageJ and QuPath at ``+ 0.5``: outlines are
shifted by half a pixel so they lie on the label image.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputFileError
from ..io import is_labels_tiff, read_json, read_labels

LayerData = tuple[Any, dict[str, Any], str]

_TIFF = (".tif", ".tiff")


def get_reader(path: str | list[str]) -> Callable[[str | list[str]], list[LayerData]] | None:
    """The reader function for ``path`` (napari's ``get_reader`` hook), or None if not ours."""
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    p = Path(path)
    suffix = p.suffix.lower()
    if not p.is_file():
        return None
    if suffix in _TIFF:
        return read_tiff
    if suffix == ".zip" and _is_roi_zip(p):
        return read_roi_zip
    if suffix == ".geojson":
        return read_geojson
    return None


def _one(path: str | list[str]) -> Path:
    return Path(path[0] if isinstance(path, list) else path)


def _is_roi_zip(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as zf:
            names = [n for n in zf.namelist() if not n.endswith("/")]
    except (zipfile.BadZipFile, OSError):
        return False
    return bool(names) and all(n.lower().endswith(".roi") for n in names)


def read_tiff(path: str | list[str]) -> list[LayerData]:
    """A label TIFF written by livecell-seg as Labels; any other TIFF as an Image layer."""

    p = _one(path)
    if is_labels_tiff(p):
        return [(read_labels(p), {"name": f"{p.stem} cells"}, "labels")]
    import tifffile

    try:
        data = tifffile.imread(p)
    except Exception as e:  # noqa: BLE001
        raise InputFileError(p, f"cannot read TIFF ({type(e).__name__}: {e})") from None
    return [(data, {"name": p.stem}, "image")]


def _shapes_layer(name: str, polygons: list[np.ndarray], features: dict[str, list]) -> LayerData:
    """A Shapes layer of closed outlines (``(n, 2)`` x/y arrays in pixel-corner coordinates)."""
    data = [np.asarray(xy, dtype=np.float64)[:, ::-1] - 0.5 for xy in polygons]
    meta = {
        "name": name,
        "shape_type": "polygon",
        "edge_color": "yellow",
        "face_color": "transparent",
        "edge_width": 1,
        "features": features,
    }
    return (data, meta, "shapes")


def read_roi_zip(path: str | list[str]) -> list[LayerData]:
    """An ImageJ/Fiji ROI zip (``predict --rois``) as a Shapes layer; feature ``label`` from the ROI names."""
    import roifile

    p = _one(path)
    try:
        rois = roifile.roiread(p)
    except Exception as e:  # noqa: BLE001
        raise InputFileError(p, f"cannot read ImageJ ROIs ({type(e).__name__}: {e})") from None
    rois = rois if isinstance(rois, list) else [rois]
    polys, labels = [], []
    for roi in rois:
        xy = np.asarray(roi.coordinates(), dtype=np.float64)
        if xy.ndim != 2 or len(xy) < 3:
            continue
        polys.append(xy)
        head = (roi.name or "").split("-")[0]
        labels.append(int(head) if head.isdigit() else len(labels) + 1)
    return [_shapes_layer(f"{p.stem} ROIs", polys, {"label": labels})]


def read_geojson(path: str | list[str]) -> list[LayerData]:
    """A GeoJSON FeatureCollection (``predict --geojson``, QuPath) as a Shapes layer.

    Every ring of every (Multi)Polygon becomes an outline; features: ``label`` (the property, else
    the feature's position) and the numeric ``measurements``, repeated for each ring of a cell.
    """

    p = _one(path)
    doc = read_json(p)
    feats = doc.get("features") if isinstance(doc, dict) else None
    if not isinstance(feats, list) or doc.get("type") != "FeatureCollection":
        raise InputFileError(p, "not a GeoJSON FeatureCollection")
    polys: list[np.ndarray] = []
    rows: list[dict[str, float]] = []
    for i, f in enumerate(feats, start=1):
        geom = (f or {}).get("geometry") or {}
        props = (f or {}).get("properties") or {}
        if geom.get("type") == "Polygon":
            parts = [geom.get("coordinates") or []]
        elif geom.get("type") == "MultiPolygon":
            parts = geom.get("coordinates") or []
        else:
            continue
        row: dict[str, float] = {"label": props.get("label", i)}
        meas = props.get("measurements")
        if isinstance(meas, dict):
            row.update({k: v for k, v in meas.items() if isinstance(v, int | float) and k != "label"})
        for rings in parts:
            for ring in rings:
                xy = np.asarray(ring, dtype=np.float64)
                if xy.ndim == 2 and len(xy) >= 4:
                    polys.append(xy[:-1] if np.array_equal(xy[0], xy[-1]) else xy)
                    rows.append(row)
    keys = list(dict.fromkeys(k for r in rows for k in r))
    features = {k: [r.get(k, np.nan) for r in rows] for k in keys} if rows else {"label": []}
    return [_shapes_layer(f"{p.stem} detections", polys, features)]
