"""The five bundled LIVECell images as napari sample data (File > Open Sample > livecell-seg).

Each sample opens as the phase-contrast image plus its LIVECell annotations as a hidden Labels
layer (LIVECell, Edlund et al., Nature Methods 2021, CC BY-NC 4.0).
"""

from __future__ import annotations

from typing import Any

from ..errors import LivecellError

#: sample key -> file name in ``livecell_seg/sample_data/images/``
SAMPLES: dict[str, str] = {
    "bt474_b3": "BT474_Phase_B3_2_02d12h00m_3.tif",
    "bt474_c3": "BT474_Phase_C3_1_01d04h00m_4.tif",
    "huh7_a10": "Huh7_Phase_A10_1_02d12h00m_3.tif",
    "mcf7_f4": "MCF7_Phase_F4_2_00d00h00m_4.tif",
    "mcf7_g4": "MCF7_Phase_G4_2_02d16h00m_1.tif",
}


def load_sample(key: str) -> list[tuple[Any, dict[str, Any], str]]:
    """napari layer data of one sample: ``[(image, meta, "image"), (annotations, meta, "labels")]``."""
    from .. import interactive as logic
    from ..io import read_image

    by_name = {p.name: p for p in logic.sample_images()}
    path = by_name.get(SAMPLES[key])
    if path is None:
        raise LivecellError(f"sample image {SAMPLES[key]} is not installed")
    image = read_image(path)
    layers: list[tuple[Any, dict[str, Any], str]] = [(image, {"name": path.stem}, "image")]
    gt = logic.sample_ground_truth(path.name, image)
    if gt is not None:
        layers.append((gt, {"name": f"{path.stem} annotations", "visible": False}, "labels"))
    return layers


def bt474_b3() -> list[tuple[Any, dict[str, Any], str]]:
    """LIVECell BT474, well B3."""
    return load_sample("bt474_b3")


def bt474_c3() -> list[tuple[Any, dict[str, Any], str]]:
    """LIVECell BT474, well C3."""
    return load_sample("bt474_c3")


def huh7_a10() -> list[tuple[Any, dict[str, Any], str]]:
    """LIVECell Huh7, well A10."""
    return load_sample("huh7_a10")


def mcf7_f4() -> list[tuple[Any, dict[str, Any], str]]:
    """LIVECell MCF7, well F4."""
    return load_sample("mcf7_f4")


def mcf7_g4() -> list[tuple[Any, dict[str, Any], str]]:
    """LIVECell MCF7, well G4."""
    return load_sample("mcf7_g4")
