"""The GPU recipe's data pack (scripts/build_gpu_pack.py) and its config (configs/gpu.yaml)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def _fake_shared(root: Path) -> None:
    """A tiny stand-in for ../shared: 2 Usiigaci images and 3 Kaggle images (one held out)."""
    import tifffile
    from PIL import Image

    rng = np.random.default_rng(0)
    u = root / "usiigaci"
    for d in ("images", "labels"):
        (u / d).mkdir(parents=True)
    for i in (1, 2):
        img = rng.integers(0, 255, (100, 120)).astype(np.uint8)
        lab = np.zeros((100, 120), np.uint16)
        lab[10:50, 10:60] = 7  # ids need not be consecutive
        lab[60:90, 70:110] = 300
        Image.fromarray(img).save(u / "images" / f"usiigaci_train_set{i}.png")
        tifffile.imwrite(u / "labels" / f"usiigaci_train_set{i}.tif", lab)
    k = root / "kaggle-sartorius"
    for d in ("images", "labels"):
        (k / d).mkdir(parents=True)
    types = {"aaa": "shsy5y", "042c17cd9143": "shsy5y", "bbb": "astro", "ccc": "astro", "ddd": "cort"}
    for i in types:
        Image.fromarray(rng.integers(0, 255, (52, 70)).astype(np.uint8)).save(k / "images" / f"{i}.png")
        lab = np.zeros((52, 70), np.uint16)
        lab[5:20, 5:25] = 2
        tifffile.imwrite(k / "labels" / f"{i}.tif", lab)
    (k / "cell_types.json").write_text(json.dumps(types))


def test_pack_zooms_usiigaci_to_livecell_pixels_and_leaves_out_the_held_out_images(tmp_path):
    pack = _load("build_gpu_pack")
    from livecell_seg.io import read_image, read_labels

    shared, out = tmp_path / "shared", tmp_path / "pack"
    _fake_shared(shared)
    assert pack.main(["--shared", str(shared), "--out", str(out), "--partial-per-type", "1"]) == 0
    img = read_image(out / "usiigaci" / "images" / "usiigaci_train_set1.png")
    lab = read_labels(out / "usiigaci" / "labels" / "usiigaci_train_set1.png")
    zoom = 0.87 / 1.24
    assert img.shape == lab.shape == (round(100 * zoom), round(120 * zoom))
    assert img.dtype == np.uint8 and lab.dtype == np.uint16
    assert sorted(np.unique(lab).tolist()) == [0, 1, 2]  # relabelled 1..n
    kept = json.loads((out / "kaggle" / "cell_types.json").read_text())
    assert "042c17cd9143" not in kept  # a held-out SH-SY5Y image never enters training
    assert sorted(kept.values()) == ["astro", "cort", "shsy5y"]  # 1 partial image per type
    assert (out / "livecell" / "labels").is_dir() and len(list((out / "livecell" / "labels").iterdir())) == 5
    manifest = json.loads((out / "MANIFEST.json").read_text())
    assert manifest["images"]["usiigaci"] == 2 and manifest["size_mib"] < pack.LIMIT_MIB
    assert pack.main(["--out", str(out), "--check"]) == 0
    victim = out / "kaggle" / "labels" / "aaa.png"
    victim.write_bytes(victim.read_bytes()[:-10])  # a damaged file is found by --check
    assert pack.main(["--out", str(out), "--check"]) == 1


def test_gpu_config_reads_the_pack_and_keeps_the_bundled_architecture(tmp_path):
    from livecell_seg.model.folder import read_model_config
    from livecell_seg.training.config import load_config

    cfg = load_config(ROOT / "configs" / "gpu.yaml")
    folders = [s.folder for s in cfg.data.train]
    assert all(f is not None and f.startswith("gpu_pack/") for f in folders)  # nothing from ../shared
    assert cfg.trainer.accelerator == "gpu" and cfg.data.num_workers > 1
    _, bundled = read_model_config(ROOT / "src" / "livecell_seg" / "models" / "default")
    for k in ("head", "arch", "base_features", "depth", "norm"):
        assert getattr(cfg.model, k) == getattr(bundled, k), k


@pytest.mark.slow
def test_train_gpu_smoke_runs_the_recipe_end_to_end_on_the_cpu(tmp_path):
    """``scripts/train_gpu.py --smoke``: the probe, the budget and the real run, on the CPU (~1 min)."""
    if not (ROOT / "gpu_pack" / "MANIFEST.json").is_file():
        pytest.skip("no gpu_pack/ (python scripts/build_gpu_pack.py)")
    train_gpu = _load("train_gpu")
    out = tmp_path / "run"
    assert train_gpu.main(["--smoke", "--out", str(out)]) == 0
    budget = json.loads((out / "budget.json").read_text())
    summary = json.loads((out / "model" / "summary.json").read_text())
    assert summary["global_step"] == budget["max_steps"] and (out / "model" / "model.pt").is_file()
