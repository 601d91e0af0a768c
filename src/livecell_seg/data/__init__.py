"""Data layer: download, COCO reading, conversion, splits, synthetic data, EDA, datasets."""

from __future__ import annotations

from pathlib import Path

#: LIVECell's pixel size in µm: Incucyte S3, 10x objective (Incucyte's specification; a 1,408 x 1,040
#: frame covers about 1.75 x 1.29 mm and is cut into 704 x 520 crops). The one place it is written:
#: the default of ``timecourse --pixel-size``, the Python API and the app (issue 22; was 0.5, which
#: made every µm² area 6.2x too small and every cells/mm² 6.2x too large).
LIVECELL_PIXEL_SIZE_UM = 1.24

SAMPLE_DIR = Path(__file__).resolve().parent.parent / "sample_data"


def sample_paths() -> tuple[Path, Path]:
    """(annotation json, images folder) of the bundled real LIVECell sample (CC BY-NC 4.0)."""
    return SAMPLE_DIR / "livecell_coco_val.json", SAMPLE_DIR / "images"
