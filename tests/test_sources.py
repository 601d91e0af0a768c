"""Training from several sources: weights, cell-type balance, partial annotation, ignore masks,
config inheritance (issue 16)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from livecell_seg.errors import InputFileError, LivecellError
from livecell_seg.io import write_labels, write_tiff_atomic
from livecell_seg.training.config import AugmentConfig, SourceConfig, load_config
from livecell_seg.training.dataset import (
    CropDataset,
    SampleRef,
    loss_weight,
    resolve_sources,
    sampling_probabilities,
)

torch = pytest.importorskip("torch")


def ref(name: str, source: int, cell_type: str = "unknown") -> SampleRef:
    return SampleRef(name=name, image=f"{name}.tif", source=source, cell_type=cell_type)


def test_sampling_probabilities_weights_and_balance():
    refs = [ref("a1", 0, "A"), ref("a2", 0, "A"), ref("a3", 0, "A"), ref("b1", 0, "B"), ref("k1", 1, "K")]
    assert sampling_probabilities(refs) is None  # legacy: every image equally often
    p = sampling_probabilities(refs, [3.0, 1.0])
    assert p is not None and p.sum() == pytest.approx(1.0)
    assert p[:4] == pytest.approx([0.75 / 4] * 4) and p[4] == pytest.approx(0.25)
    p = sampling_probabilities(refs, [3.0, 1.0], balance="cell_type")
    # source 0's share 0.75: half for type A (3 images), half for B (1 image)
    assert p[:3] == pytest.approx([0.375 / 3] * 3) and p[3] == pytest.approx(0.375)
    assert p[4] == pytest.approx(0.25)
    # balance without weights: sources keep their size-proportional share (4/5 and 1/5)
    p = sampling_probabilities(refs, [None, None], balance="cell_type")
    assert p[3] == pytest.approx(0.4) and p[4] == pytest.approx(0.2)
    # a source without a weight gets 1 when another has one
    p = sampling_probabilities(refs, [None, 3.0])
    assert p[4] == pytest.approx(0.75)


def test_loss_weight_partial_and_ignore():
    labels = np.zeros((40, 40), np.int32)
    labels[10:14, 10:14] = 1
    full = loss_weight(labels, None, None)
    assert full.min() == 1.0
    w = loss_weight(labels, None, partial_margin=3)
    assert w[12, 12] == 1.0 and w[12, 16] == 1.0  # the cell and background 3 px away count
    assert w[12, 18] == 0.0 and w[35, 35] == 0.0  # farther background is not penalised
    assert loss_weight(np.zeros((5, 5), np.int32), None, 3).max() == 0.0  # nothing annotated: no loss
    ignore = np.zeros((40, 40), bool)
    ignore[30:, 30:] = True
    w = loss_weight(labels, ignore, None)
    assert w[35, 35] == 0.0 and w[0, 0] == 1.0


def write_source(root, n=4, h=64, w=64, types=None, ignore_half=False):
    yy, xx = np.mgrid[:h, :w]
    for i in range(n):
        lab = np.zeros((h, w), np.uint16)
        lab[(yy - 20) ** 2 + (xx - 20) ** 2 <= 36] = 1
        img = (100 + 80 * (lab > 0)).astype(np.uint8)
        write_tiff_atomic(root / "images" / f"im{i}.tif", img)
        write_labels(root / "labels" / f"im{i}.tif", lab)
        if ignore_half:
            m = np.zeros((h, w), np.uint8)
            m[:, w // 2 :] = 1
            write_tiff_atomic(root / "ignore" / f"im{i}.tif", m)
    if types:
        (root / "cell_types.json").write_text(json.dumps({f"im{i}": types[i] for i in range(n)}))
    return root


def test_folder_source_reads_cell_types_ignore_and_filters(tmp_path):
    write_source(tmp_path / "k", types=["astro", "cort", "shsy5y", "cort"], ignore_half=True)
    refs = resolve_sources([SourceConfig(folder=str(tmp_path / "k"), annotation="partial")])
    assert [r.cell_type for r in refs] == ["astro", "cort", "shsy5y", "cort"]
    assert all(r.partial and r.ignore and r.ignore.endswith(f"{r.name}.tif") for r in refs)
    only = resolve_sources([SourceConfig(folder=str(tmp_path / "k"), include_types=["cort"])])
    assert [r.name for r in only] == ["im1", "im3"] and not only[0].partial
    # LIVECell names carry the type
    assert {r.cell_type for r in resolve_sources([SourceConfig(sample=True)])} == {"MCF7", "BT474", "Huh7"}
    (tmp_path / "k" / "cell_types.json").write_text("[1, 2]")
    with pytest.raises(InputFileError, match="cell_types.json"):
        resolve_sources([SourceConfig(folder=str(tmp_path / "k"))])


def test_crop_weights_follow_ignore_mask_and_partial_policy(tmp_path):
    write_source(tmp_path / "k", ignore_half=True)
    aug = AugmentConfig(strength=0.0)
    refs = resolve_sources([SourceConfig(folder=str(tmp_path / "k"))])
    ds = CropDataset(refs, "fg", crop_size=64, augment=aug, target_margin=0)
    _, target, weight = ds.sample(0, np.random.default_rng(0))
    assert weight[:, :32].min() == 1.0 and weight[:, 32:].max() == 0.0  # image-sized crop, no zoom
    refs = resolve_sources(
        [
            SourceConfig(
                labels=str(tmp_path / "k" / "labels"),
                images=str(tmp_path / "k" / "images"),
                annotation="partial",
            )
        ]
    )
    ds = CropDataset(refs, "fg", crop_size=64, augment=aug, target_margin=0, partial_margin=4)
    _, target, weight = ds.sample(0, np.random.default_rng(0))
    assert weight[20, 20] == 1.0 and weight[20, 29] == 1.0 and weight[60, 60] == 0.0
    assert target[0][20, 20] == 1.0
    item = ds[0]
    assert item["weight"].shape == (64, 64)


def test_crop_sampling_draws_by_probability(tmp_path):
    write_source(tmp_path / "k", n=2)
    refs = resolve_sources([SourceConfig(folder=str(tmp_path / "k"))])
    ds = CropDataset(refs, "fg", crop_size=32, probabilities=np.array([0.9, 0.1]))
    rng = np.random.default_rng(0)
    picks = [ds.pick(0, rng) for _ in range(2000)]
    assert 0.86 < picks.count(0) / 2000 < 0.94
    plain = CropDataset(refs, "fg", crop_size=32)
    assert [plain.pick(i, rng) for i in range(4)] == [0, 1, 0, 1]


def test_weighted_loss_ignores_zero_weight_pixels():
    from livecell_seg.training.losses import SegLoss

    torch.manual_seed(0)
    targets = (torch.rand(2, 3, 16, 16) > 0.5).float()
    logits = torch.randn(2, 3, 16, 16)
    weight = torch.ones(2, 16, 16)
    weight[:, :, 8:] = 0
    loss = SegLoss("fg+dist")
    a, _ = loss(logits, targets, weight)
    changed = logits.clone()
    changed[..., 8:] = torch.randn(2, 3, 16, 8) * 5
    b, _ = loss(changed, targets, weight)
    assert float(a) == pytest.approx(float(b), rel=1e-6)
    c, _ = loss(changed, targets)  # without the weight the change counts
    assert abs(float(c) - float(a)) > 1e-3
    with pytest.raises(ValueError, match="weight"):
        loss(logits, targets, torch.ones(2, 8, 8))


def test_config_source_checks_and_extends(tmp_path):
    from livecell_seg.training.config import config_from_dict

    for bad, msg in (
        ({"weight": 0}, "weight"),
        ({"weight": float("nan")}, "weight"),
        ({"annotation": "some"}, "annotation"),
    ):
        with pytest.raises(LivecellError, match=msg):
            config_from_dict({"data": {"train": [{"sample": True, **bad}]}})
    with pytest.raises(LivecellError, match="scale_range"):
        config_from_dict({"data": {"augment": {"scale_range": [2.0, 0.5]}}})
    with pytest.raises(LivecellError, match="balance"):
        config_from_dict({"data": {"balance": "types"}})
    (tmp_path / "base.yaml").write_text("optim: {lr: 0.5, max_steps: 7}\ndata: {batch_size: 3}\n")
    (tmp_path / "child.yaml").write_text("extends: base.yaml\noptim: {lr: 0.25}\n")
    cfg = load_config(tmp_path / "child.yaml")
    assert cfg.optim.lr == 0.25 and cfg.optim.max_steps == 7 and cfg.data.batch_size == 3
    (tmp_path / "a.yaml").write_text("extends: b.yaml\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\n")
    with pytest.raises(InputFileError, match="cycle"):
        load_config(tmp_path / "a.yaml")


def test_shipped_lever_configs_load():
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent / "configs" / "levers"
    names = sorted(p.name for p in root.glob("l*.yaml"))
    assert names, "no lever configs"
    for n in names:
        cfg = load_config(root / n)
        assert cfg.optim.max_steps == 300 and cfg.model.head == "fg+dist"


def test_training_mixes_weighted_partial_and_ignore_sources(tmp_path):
    from livecell_seg.model.folder import load_model_dir
    from livecell_seg.training.config import load_config
    from livecell_seg.training.trainer import train

    a = write_source(tmp_path / "a", n=2)
    b = write_source(tmp_path / "b", n=2, types=["astro", "cort"], ignore_half=True)
    cfg = load_config(
        None,
        [
            f"out_dir={tmp_path / 'run'}",
            "model.head=fg+dist",
            "model.base_features=4",
            "model.depth=2",
            f"data.train=[{{folder: {a}, weight: 3}}, {{folder: {b}, weight: 1, annotation: partial}}]",
            "data.balance=cell_type",
            "data.augment.scale_range=[0.5, 2.0]",
            "data.crop_size=32",
            "data.target_margin=8",
            "data.batch_size=4",
            "data.samples_per_epoch=8",
            "data.num_workers=0",
            "optim.epochs=2",
            "trainer.accelerator=cpu",
            "trainer.progress_bar=false",
            "trainer.loggers=[]",
            "trainer.threads=1",
        ],
    )
    run = train(cfg)
    model = load_model_dir(run / "model")
    # every image holds disks of radius 6: a diameter of about 12 px
    assert model.model_config.cell_diameter == pytest.approx(12.4, abs=1.0)
    # the last checkpoint as a model folder (no validation: the same weights as run/model)
    from livecell_seg.training.trainer import export_last

    last = export_last(run)
    assert last == run / "last_model"
    a, b = (torch.load(d / "model.pt", weights_only=True) for d in (last, run))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    stamp = (last / "model.pt").stat().st_mtime_ns
    assert export_last(run) == last and (last / "model.pt").stat().st_mtime_ns == stamp  # up to date: kept
    with pytest.raises(InputFileError, match="last.ckpt"):
        export_last(tmp_path)
