"""Build the self-contained training data pack for ``make train-gpu`` (issue 23).

A GPU machine gets the repository and nothing else (``../shared`` stays behind), so the GPU recipe
(``configs/gpu.yaml``) reads its data from one folder, ``gpu_pack/`` (git-ignored, never committed:
the Kaggle images are non-commercial and may not enter the repository), built here from the
shared sources and kept under 60 MiB:

- ``usiigaci/``: the 50 Usiigaci images (MIT licence) zoomed by 0.87 / 1.24 ≈ 0.70, so their large
  flat cells have the size they would have at LIVECell's 1.24 µm per pixel (image: linear
  interpolation with anti-aliasing; labels: nearest neighbour);
- ``kaggle/``: the Sartorius Kaggle SH-SY5Y images (all but the 12 held out for scoring) and an
  evenly spaced subset of the partially annotated astrocyte and cortical-neuron images (the
  whole set is 112 MB), with ``cell_types.json``;
- ``livecell/``: the 5 annotated LIVECell sample images of the package (CC BY-NC 4.0), their COCO
  polygons rasterized to label images here, so the GPU machine needs no pycocotools.

Images are written as 8-bit PNG, labels as 16-bit PNG (lossless; no imagecodecs needed to read
them). ``MANIFEST.json`` records every file's SHA-256, the sources and their licences. ::

    python scripts/build_gpu_pack.py                  # -> gpu_pack/ (about 55 MiB)
    python scripts/build_gpu_pack.py --check          # verify gpu_pack/ against its manifest
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
LIVECELL_UM = 1.24
USIIGACI_UM = 0.87
#: the Kaggle SH-SY5Y images no model trains on (the held-out column of docs/results.md)
SHSY5Y_HELDOUT = {
    "042c17cd9143", "1974fbb27dcf", "25fc36476862", "42d8ecbc95a1", "5b8e5ee1ec61", "68780361eded",
    "815de003cb5b", "8f6d3deadc55", "ad12c1357f63", "bb3520da4cce", "de35454a3346", "f653c5eec0f8",
}  # fmt: skip
LIMIT_MIB = 60.0


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _save_png(path: Path, arr: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    if arr.dtype == np.uint16:
        Image.fromarray(arr).save(tmp, format="PNG", optimize=True)
    else:
        Image.fromarray(arr.astype(np.uint8)).save(tmp, format="PNG", optimize=True)
    tmp.replace(path)


def _relabel_uint16(labels: np.ndarray) -> np.ndarray:
    from skimage.segmentation import relabel_sequential

    out = relabel_sequential(labels.astype(np.int64))[0]
    if out.max() > 65535:
        raise ValueError("more than 65,535 cells in one image")
    return out.astype(np.uint16)


def build_usiigaci(src: Path, dst: Path, zoom: float) -> dict[str, str]:
    from skimage.transform import resize

    from livecell_seg.io import read_image, read_labels

    types = {}
    for p in sorted((src / "images").glob("*.png")):
        img = read_image(p).astype(np.float32)
        lab = read_labels(src / "labels" / f"{p.stem}.tif")
        shape = (round(img.shape[0] * zoom), round(img.shape[1] * zoom))
        img_z = resize(img, shape, order=1, anti_aliasing=True, preserve_range=True)
        lab_z = resize(lab, shape, order=0, anti_aliasing=False, preserve_range=True).astype(np.int64)
        _save_png(dst / "images" / f"{p.stem}.png", np.clip(np.rint(img_z), 0, 255).astype(np.uint8))
        _save_png(dst / "labels" / f"{p.stem}.png", _relabel_uint16(lab_z))
        types[p.stem] = "usiigaci"
    (dst / "cell_types.json").write_text(json.dumps(types, indent=0) + "\n")
    return types


def build_kaggle(src: Path, dst: Path, per_partial_type: int) -> dict[str, str]:
    from livecell_seg.io import read_image, read_labels

    all_types = json.loads((src / "cell_types.json").read_text())
    keep: dict[str, str] = {}
    for t in sorted(set(all_types.values())):
        ids = sorted(i for i, v in all_types.items() if v == t and i not in SHSY5Y_HELDOUT)
        if t != "shsy5y" and per_partial_type <= 0:
            ids = []
        elif t != "shsy5y" and len(ids) > per_partial_type:
            step = len(ids) / per_partial_type
            ids = [ids[int(k * step)] for k in range(per_partial_type)]
        keep.update({i: t for i in ids})
    for i in sorted(keep):
        img = read_image(src / "images" / f"{i}.png")
        _save_png(dst / "images" / f"{i}.png", img.astype(np.uint8))
        _save_png(dst / "labels" / f"{i}.png", _relabel_uint16(read_labels(src / "labels" / f"{i}.tif")))
    (dst / "cell_types.json").write_text(json.dumps(keep, indent=0, sort_keys=True) + "\n")
    return keep


def build_livecell_sample(dst: Path) -> dict[str, str]:
    from livecell_seg.data import sample_paths
    from livecell_seg.data.coco import annotations_to_labels, cell_type_of, find_image, load_coco
    from livecell_seg.io import read_image

    js, images = sample_paths()
    ds = load_coco(js)
    types = {}
    for im in ds.images:
        stem = Path(im["file_name"]).stem
        img = read_image(find_image(images, im["file_name"]))
        lab = annotations_to_labels(ds.anns_by_image.get(int(im["id"]), []), *img.shape)
        _save_png(dst / "images" / f"{stem}.png", img.astype(np.uint8))
        _save_png(dst / "labels" / f"{stem}.png", _relabel_uint16(lab))
        types[stem] = cell_type_of(im["file_name"])
    (dst / "cell_types.json").write_text(json.dumps(types, indent=0, sort_keys=True) + "\n")
    (dst / "LICENCE.md").write_text(
        "LIVECell images and annotations: CC BY-NC 4.0, Edlund et al., Nature Methods 18, "
        "1038-1045 (2021), doi:10.1038/s41592-021-01249-6\n"
    )
    return types


def build_pseudo(pseudo: Path, images: Path, dst: Path) -> dict[str, str]:
    """Pseudo-labels (``livecell-seg pseudolabel --out PSEUDO``: labels/, ignore/) of unannotated
    LIVECell images, with their images, as a ``folder`` source (its ``ignore/`` masks are read)."""
    from livecell_seg.data.coco import cell_type_of
    from livecell_seg.io import read_image, read_labels

    types = {}
    for lab_path in sorted((pseudo / "labels").glob("*.tif")):
        stem = lab_path.stem
        img = read_image(images / f"{stem}.tif")
        _save_png(dst / "images" / f"{stem}.png", img.astype(np.uint8))
        _save_png(dst / "labels" / f"{stem}.png", _relabel_uint16(read_labels(lab_path)))
        ign = (read_labels(pseudo / "ignore" / f"{stem}.tif") > 0).astype(np.uint8) * 255
        _save_png(dst / "ignore" / f"{stem}.png", ign)
        types[stem] = cell_type_of(f"{stem}.tif")
    (dst / "cell_types.json").write_text(json.dumps(types, indent=0, sort_keys=True) + "\n")
    return types


def manifest(out: Path) -> dict:
    files = sorted(p for p in out.rglob("*") if p.is_file() and p.name != "MANIFEST.json")
    return {str(p.relative_to(out)): _sha(p) for p in files}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", default=str(SHARED), help="the shared data folder")
    ap.add_argument("--out", default=str(ROOT / "gpu_pack"))
    ap.add_argument(
        "--partial-per-type", type=int, default=45, help="astrocyte / cortical-neuron images kept"
    )
    ap.add_argument("--check", action="store_true", help="only verify an existing pack against its manifest")
    ap.add_argument(
        "--pseudo",
        default=None,
        metavar="DIR",
        help="also pack pseudo-labels (livecell-seg pseudolabel --out DIR) of ../shared/livecell-unlabeled",
    )
    args = ap.parse_args(argv)
    out = Path(args.out)
    if args.check:
        m = json.loads((out / "MANIFEST.json").read_text())
        bad = [f for f, h in m["files"].items() if not (out / f).is_file() or _sha(out / f) != h]
        print(f"{out}: {len(m['files']) - len(bad)} files ok, {len(bad)} bad {bad[:5]}")
        return 1 if bad else 0
    shared = Path(args.shared)
    for d in ("usiigaci", "kaggle-sartorius"):
        if not (shared / d).is_dir():
            print(f"build_gpu_pack: {shared / d} not found", file=sys.stderr)
            return 2
    import shutil

    final, out = out, out.with_name(out.name + ".part")  # built aside, then swapped in: no stale files
    shutil.rmtree(out, ignore_errors=True)
    zoom = USIIGACI_UM / LIVECELL_UM
    n_u = build_usiigaci(shared / "usiigaci", out / "usiigaci", zoom)
    n_k = build_kaggle(shared / "kaggle-sartorius", out / "kaggle", args.partial_per_type)
    n_l = build_livecell_sample(out / "livecell")
    n_p = (
        build_pseudo(Path(args.pseudo), shared / "livecell-unlabeled", out / "pseudo") if args.pseudo else {}
    )
    files = manifest(out)
    size = sum((out / f).stat().st_size for f in files) / 2**20
    counts: dict[str, int] = {}
    for t in [*n_u.values(), *n_k.values(), *n_l.values(), *(f"pseudo {v}" for v in n_p.values())]:
        counts[t] = counts.get(t, 0) + 1
    info = {
        "images": counts,
        "usiigaci_zoom": round(zoom, 4),
        "size_mib": round(size, 2),
        "licences": {
            "usiigaci": "MIT, Copyright (c) 2018 Okinawa Institute of Science & Technology; Tsai et al., SoftwareX 9, 2019",
            "kaggle": "Sartorius Kaggle competition data: non-commercial research use; do not commit",
            "livecell": "CC BY-NC 4.0, Edlund et al., Nature Methods 2021",
        },
        "files": files,
    }
    (out / "MANIFEST.json").write_text(json.dumps(info, indent=1) + "\n")
    if final.exists():
        if final.is_dir() and not (final / "MANIFEST.json").is_file() and any(final.iterdir()):
            print(f"build_gpu_pack: {final} exists and is not a data pack; not replacing it", file=sys.stderr)
            return 2
        shutil.rmtree(final)
    out.rename(final)
    out = final
    print(f"{out}: {counts}, {size:.1f} MiB")
    if size > LIMIT_MIB:
        print(f"build_gpu_pack: {size:.1f} MiB is over the {LIMIT_MIB:g} MiB limit", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
