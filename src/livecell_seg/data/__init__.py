"""Data layer: download, COCO reading, conversion, splits, synthetic data, EDA, datasets."""

from __future__ import annotations

from pathlib import Path

SAMPLE_DIR = Path(__file__).resolve().parent.parent / "sample_data"


def sample_paths() -> tuple[Path, Path]:
    """(annotation json, images folder) of the bundled real LIVECell sample (CC BY-NC 4.0)."""
    return SAMPLE_DIR / "livecell_coco_val.json", SAMPLE_DIR / "images"
