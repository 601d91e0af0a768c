"""Synthetic LIVECell-format data: phase-contrast-like images + COCO polygon annotations.

The output mimics the official release so every stage can be tested without the network::

    OUT/images/livecell_train_val_images/<CellType>/<CellType>_Phase_<Well>_<Loc>_<Time>_<Crop>.tif
    OUT/annotations/livecell_coco_synth.json

Images are 8-bit, single channel, LZW-compressed TIFF (704x520 by default), background near 128,
cells darker with a bright halo outside and a dark rim inside, touching cells separated by a thin
dark line, plus illumination gradient, texture and noise. Eight cell-type styles differ in size,
elongation, irregularity, density and clustering (touching cells). Annotations are polygons with
two decimals, like LIVECell's. Deterministic for a given seed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import LivecellError
from ..io import check_image_size, folder_lock, write_json_atomic, write_tiff_atomic
from ..options import check_finite
from .coco import annotations_to_labels

#: LIVECell's image size (height, width)
LIVECELL_SIZE = (520, 704)
#: at most this many images per dataset (each is written; 100,000 LIVECell-size images are ~37 GB)
MAX_IMAGES = 100_000
#: ``density_scale`` at most: 20x LIVECell's densest style is about 8,000 cells per 704x520
#: image, more than fit (the cells per image grow with it: 1e9 once asked for 21 GB; issue 22)
MAX_DENSITY = 20.0


@dataclass(frozen=True)
class CellStyle:
    """How the cells of one synthetic cell type look and are arranged."""

    radius: float  #: mean cell radius (pixels)
    radius_sd: float  #: relative spread of the radius
    elongation: float  #: mean ratio of long to short axis
    irregularity: float  #: amplitude of the random boundary harmonics (relative)
    density: int  #: cells per 704x520 image
    clustering: float  #: probability that a cell is placed touching an existing one
    contrast: float  #: darkness of the cell body


#: styles loosely after the eight LIVECell cell types
STYLES: dict[str, CellStyle] = {
    "A172": CellStyle(16.0, 0.25, 1.8, 0.18, 110, 0.4, 18.0),
    "BT474": CellStyle(9.0, 0.20, 1.2, 0.10, 260, 0.85, 22.0),
    "BV2": CellStyle(6.0, 0.20, 1.15, 0.08, 420, 0.5, 26.0),
    "Huh7": CellStyle(17.0, 0.25, 1.3, 0.15, 120, 0.8, 14.0),
    "MCF7": CellStyle(10.0, 0.20, 1.25, 0.12, 260, 0.8, 20.0),
    "SHSY5Y": CellStyle(7.0, 0.30, 2.6, 0.22, 260, 0.6, 24.0),
    "SkBr3": CellStyle(8.0, 0.20, 1.15, 0.08, 330, 0.75, 24.0),
    "SKOV3": CellStyle(15.0, 0.25, 2.2, 0.15, 140, 0.5, 16.0),
}
CELL_TYPES = tuple(STYLES)

#: where the images and the json go under OUT (the official release's layout)
IMAGES_SUBDIR = Path("images") / "livecell_train_val_images"
JSON_NAME = Path("annotations") / "livecell_coco_synth.json"


def cell_polygons(
    rng: np.random.Generator,
    centers: np.ndarray,
    radii: np.ndarray,
    elongation: np.ndarray,
    angles: np.ndarray,
    irregularity: float,
    n_vertices: int = 32,
) -> np.ndarray:
    """Star-convex cell outlines, vectorized: (n, n_vertices, 2) array of (x, y) vertices.

    An ellipse of mean radius ``radii`` and axis ratio ``elongation`` rotated by ``angles``, with a
    smooth random boundary made of harmonics 2..5 of relative amplitude ``irregularity``.
    """
    n = len(centers)
    t = np.linspace(0.0, 2.0 * np.pi, n_vertices, endpoint=False)
    k = np.arange(2, 6)
    amp = rng.normal(0.0, 1.0, (n, k.size)) * irregularity / k
    phase = rng.uniform(0.0, 2.0 * np.pi, (n, k.size))
    wobble = 1.0 + np.einsum(
        "nk,nkt->nt", amp, np.cos(k[None, :, None] * t[None, None, :] + phase[:, :, None])
    )
    wobble = np.clip(wobble, 0.55, 1.6)
    a = radii * np.sqrt(elongation)
    b = radii / np.sqrt(elongation)
    ex = a[:, None] * np.cos(t)[None, :] * wobble
    ey = b[:, None] * np.sin(t)[None, :] * wobble
    ca, sa = np.cos(angles)[:, None], np.sin(angles)[:, None]
    x = centers[:, 0:1] + ca * ex - sa * ey
    y = centers[:, 1:2] + sa * ex + ca * ey
    return np.stack([x, y], axis=-1)


def _place_cells(
    rng: np.random.Generator, style: CellStyle, height: int, width: int, n_cells: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Centres, radii, elongations and angles of up to ``n_cells`` cells, some touching."""
    radii_all = np.clip(style.radius * (1.0 + style.radius_sd * rng.standard_normal(n_cells)), 3.0, None)
    elong_all = np.clip(style.elongation * np.exp(0.2 * rng.standard_normal(n_cells)), 1.0, 4.0)
    centers: list[tuple[float, float]] = []
    radii: list[float] = []
    elong: list[float] = []
    angles: list[float] = []
    # a coarse occupancy grid makes the overlap test O(1) per candidate
    cell = max(4.0, 2.0 * style.radius)
    grid: dict[tuple[int, int], list[int]] = {}
    tries = 0
    i = 0
    while i < n_cells and tries < 12 * n_cells:
        tries += 1
        r = float(radii_all[i])
        if centers and rng.random() < style.clustering:
            j = int(rng.integers(len(centers)))
            direction = rng.uniform(0, 2 * np.pi)
            dist = (radii[j] + r) * rng.uniform(0.85, 1.0)
            cx = centers[j][0] + dist * np.cos(direction)
            cy = centers[j][1] + dist * np.sin(direction)
        else:
            cx, cy = rng.uniform(-0.3 * r, width + 0.3 * r), rng.uniform(-0.3 * r, height + 0.3 * r)
        if not (0 <= cx < width and 0 <= cy < height):
            continue
        gx, gy = int(cx // cell), int(cy // cell)
        ok = True
        for dx in (-2, -1, 0, 1, 2):
            for dy in (-2, -1, 0, 1, 2):
                for q in grid.get((gx + dx, gy + dy), ()):
                    qx, qy = centers[q]
                    if (qx - cx) ** 2 + (qy - cy) ** 2 < (0.8 * (radii[q] + r)) ** 2:
                        ok = False
                        break
                if not ok:
                    break
            if not ok:
                break
        if not ok:
            continue
        grid.setdefault((gx, gy), []).append(len(centers))
        centers.append((cx, cy))
        radii.append(r)
        e = float(elong_all[i])
        angles.append(float(rng.uniform(0, np.pi)))
        elong.append(e)
        i += 1
    return (
        np.array(centers, dtype=np.float64).reshape(-1, 2),
        np.array(radii),
        np.array(elong),
        np.array(angles),
    )


def _clip_polygon(poly: np.ndarray, height: int, width: int) -> np.ndarray:
    out = poly.copy()
    out[:, 0] = np.clip(out[:, 0], 0.0, width)
    out[:, 1] = np.clip(out[:, 1], 0.0, height)
    return np.round(out, 2)


def synthetic_annotations(
    rng: np.random.Generator, cell_type: str, height: int, width: int, density_scale: float = 1.0
) -> list[list[float]]:
    """Flat polygons ``[x0, y0, x1, y1, ...]`` (two decimals, clipped to the image) of one image."""
    if not 0 < density_scale <= MAX_DENSITY:  # also refuses NaN: the cell count follows it
        raise ValueError(f"density_scale must be in (0, {MAX_DENSITY:g}], got {density_scale!r}")
    style = STYLES[cell_type]
    area_ratio = (height * width) / (LIVECELL_SIZE[0] * LIVECELL_SIZE[1])
    n = max(2, int(round(style.density * density_scale * area_ratio * rng.uniform(0.7, 1.3))))
    centers, radii, elong, angles = _place_cells(rng, style, height, width, n)
    if len(centers) == 0:
        return []
    polys = cell_polygons(rng, centers, radii, elong, angles, style.irregularity)
    out = []
    for p in polys:
        q = _clip_polygon(p, height, width)
        if np.ptp(q[:, 0]) < 1.0 or np.ptp(q[:, 1]) < 1.0:
            continue
        out.append(q.ravel().tolist())
    return out


def render_phase_contrast(
    rng: np.random.Generator, labels: np.ndarray, contrast: float = 20.0, texture: float = 6.0
) -> np.ndarray:
    """A phase-contrast-like uint8 image of an instance label map (background about 128)."""
    from scipy import ndimage
    from skimage.segmentation import find_boundaries

    h, w = labels.shape
    fg = labels > 0
    edges = find_boundaries(labels, mode="inner") & fg
    inner = fg & ~edges
    d_in = ndimage.distance_transform_edt(inner)
    d_out = ndimage.distance_transform_edt(~fg)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    gx, gy = rng.normal(0, 6.0, 2)
    img = 128.0 + gx * (xx / w - 0.5) + gy * (yy / h - 0.5)
    img += 60.0 * np.exp(-d_out / 1.3) * (~fg)  # bright halo around cells
    body = -0.6 * contrast * (1.0 - np.exp(-d_in / 3.0)) - 28.0 * np.exp(-d_in / 1.0)  # dark rim + body
    img += np.where(fg, body, 0.0)
    img -= 22.0 * edges  # thin dark line between touching cells
    tex = ndimage.gaussian_filter(rng.standard_normal((h, w)), 1.5)
    tex *= texture / max(float(tex.std()), 1e-6)
    img += np.where(fg, 1.5 * tex, 0.3 * tex)
    # granules: small dark and bright specks inside the cells
    specks = ndimage.gaussian_filter((rng.random((h, w)) < 0.01).astype(np.float32), 1.0)
    img += np.where(d_in > 2, -120.0 * specks * rng.choice([-0.5, 1.0], size=(h, w)), 0.0)
    img = ndimage.gaussian_filter(img, 0.7)
    img += rng.normal(0.0, 3.5, (h, w))
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def _image_names(rng: np.random.Generator, n_images: int) -> list[tuple[str, str]]:
    """(cell type, LIVECell file name) for n images, cycling through the 8 types, 2-3 wells each."""
    wells: dict[str, list[str]] = {}
    for ct in CELL_TYPES:
        k = int(rng.integers(2, 4))
        letters = rng.choice(list("ABCDEFGH"), size=k, replace=False)
        nums = rng.integers(1, 13, size=k)
        wells[ct] = [f"{a}{b}" for a, b in zip(letters, nums)]
    names: list[tuple[str, str]] = []
    used: set[str] = set()
    for i in range(n_images):
        ct = CELL_TYPES[i % len(CELL_TYPES)]
        j = i // len(CELL_TYPES)
        while True:
            well = wells[ct][j % len(wells[ct])]
            loc = int(rng.integers(1, 5))
            hours = 4 * int(rng.integers(0, 24))
            crop = int(rng.integers(1, 5))
            name = f"{ct}_Phase_{well}_{loc}_{hours // 24:02d}d{hours % 24:02d}h00m_{crop}.tif"
            if name not in used:
                used.add(name)
                names.append((ct, name))
                break
    return names


def _coco_entries(polys: list[list[float]], image_id: int, first_ann_id: int) -> list[dict]:
    """COCO annotation entries of flat polygons (area = polygon area, like LIVECell's)."""
    anns = []
    for k, p in enumerate(polys):
        xs, ys = np.asarray(p[0::2]), np.asarray(p[1::2])
        area = 0.5 * abs(float(np.dot(xs, np.roll(ys, -1)) - np.dot(ys, np.roll(xs, -1))))
        x0, y0 = float(xs.min()), float(ys.min())
        anns.append(
            {
                "id": first_ann_id + k,
                "image_id": image_id,
                "category_id": 1,
                "segmentation": [p],
                "area": round(area, 4),
                "bbox": [x0, y0, round(float(xs.max()) - x0, 2), round(float(ys.max()) - y0, 2)],
                "iscrowd": 0,
            }
        )
    return anns


def synthetic_coco(
    n_images: int,
    seed: int = 0,
    size: tuple[int, int] = LIVECELL_SIZE,
    density_scale: float = 1.0,
) -> dict:
    """A LIVECell-like COCO dict (annotations only, no pixels) — fast, for scale benchmarks."""
    rng = np.random.default_rng(seed)
    h, w = size
    images, anns = [], []
    next_ann = n_images + 1
    for i, (ct, name) in enumerate(_image_names(rng, n_images)):
        iid = i + 1
        images.append(_image_entry(iid, name, h, w))
        polys = synthetic_annotations(rng, ct, h, w, density_scale)
        new = _coco_entries(polys, iid, next_ann)
        next_ann += len(new)
        anns.extend(new)
    return _coco_dict(images, anns)


def _image_entry(iid: int, name: str, h: int, w: int) -> dict:
    return {
        "id": iid,
        "width": w,
        "height": h,
        "file_name": name,
        "original_filename": name.replace(".tif", ".png"),
        "url": "",
    }


def _coco_dict(images: list[dict], anns: list[dict]) -> dict:
    return {
        "info": {
            "description": "livecell-seg synthetic LIVECell-format dataset",
            "version": "1.0",
            "contributor": "livecell-seg",
        },
        "licenses": [],
        "categories": [{"supercategory": "cell", "id": 1, "name": "cell"}],
        "images": images,
        "annotations": anns,
    }


def make_synthetic_dataset(
    out: str | os.PathLike[str],
    n_images: int = 16,
    seed: int = 0,
    size: tuple[int, int] = LIVECELL_SIZE,
    density_scale: float = 1.0,
) -> tuple[Path, Path]:
    """Write a synthetic LIVECell-format dataset under ``out``; return (json path, images folder).

    ``size`` is (height, width); cells keep their LIVECell pixel sizes, so a small ``size`` gives few
    cells (at least two per image). Images cycle through the 8 cell types, each with 2-3 wells.
    The images folder is ``out/images`` (pass it to ``convert --images``).
    """

    if isinstance(n_images, bool) or not isinstance(n_images, int) or not 1 <= n_images <= MAX_IMAGES:
        raise LivecellError(f"n_images must be an integer in [1, {MAX_IMAGES:,}], got {n_images!r}")
    check_finite(density_scale, "density", 0, MAX_DENSITY)
    if not density_scale > 0:
        raise LivecellError(f"density must be positive, got {density_scale!r}")
    h, w = (int(v) for v in size)
    if h < 16 or w < 16:
        raise LivecellError(f"size must be at least 16x16, got {h}x{w}")
    check_image_size("size", h, w, what="the image")  # the limit of every command (predict, ...)
    out = Path(out)

    with folder_lock(out, "synth"):  # a second run into the same folder at once is refused
        rng = np.random.default_rng(seed)
        images, anns = [], []
        next_ann = n_images + 1
        for i, (ct, name) in enumerate(_image_names(rng, n_images)):
            iid = i + 1
            polys = synthetic_annotations(rng, ct, h, w, density_scale)
            new = _coco_entries(polys, iid, next_ann)
            next_ann += len(new)
            labels = annotations_to_labels(new, h, w, min_fragment=1)
            img = render_phase_contrast(rng, labels, contrast=STYLES[ct].contrast)
            write_tiff_atomic(out / IMAGES_SUBDIR / ct / name, img, compression="lzw")
            images.append(_image_entry(iid, name, h, w))
            anns.extend(new)
        json_path = out / JSON_NAME
        write_json_atomic(json_path, _coco_dict(images, anns), indent=None)
        return json_path, out / "images"
