"""Config loading, CPU smoke training per head, resume, and real 2-process DDP (gloo)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import HANG_S
from livecell_seg.errors import InputFileError, LivecellError
from livecell_seg.training.config import TrainConfig, apply_overrides, config_to_dict, load_config

REPO = Path(__file__).resolve().parents[1]


def tiny_overrides(data_dir: Path, out: Path, head: str = "fg+boundary") -> list[str]:
    return [
        f"out_dir={out}",
        f"model.head={head}",
        "model.base_features=4",
        "model.depth=2",
        f"data.train=[{{folder: {data_dir}}}]",
        f"data.val=[{{folder: {data_dir}, include: [img_0]}}]",
        "data.crop_size=48",
        "data.target_margin=8",
        "data.batch_size=4",
        "data.samples_per_epoch=16",
        "data.num_workers=0",
        "optim.lr=1e-2",
        "optim.epochs=3",
        "optim.schedule=constant",
        "trainer.accelerator=cpu",
        "trainer.devices=1",
        "trainer.log_every_n_steps=1",
        "trainer.progress_bar=false",
        "trainer.threads=1",
    ]


def tiny_config(
    data_dir: Path, out: Path, head: str = "fg+boundary", extra: tuple[str, ...] = ()
) -> TrainConfig:
    return load_config(None, tiny_overrides(data_dir, out, head) + list(extra))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    sys.path.insert(0, str(Path(__file__).parent))
    from test_dataset import write_folder

    return write_folder(tmp_path_factory.mktemp("conv"), n=3, h=72, w=96)


def train_losses(run: Path) -> list[tuple[int, float]]:
    out = []
    for f in sorted((run / "logs" / "csv").glob("version_*/metrics.csv")):
        with f.open() as fh:
            for row in csv.DictReader(fh):
                if row.get("train/loss_step"):
                    out.append((int(row["step"]), float(row["train/loss_step"])))
    return out


# --------------------------------------------------------------------------------------- config


def test_config_yaml_overrides_and_errors(tmp_path):
    cfg = load_config(
        REPO / "configs" / "sample_cpu.yaml", ["optim.lr=3e-4", "data.batch_size=2", "model.head=fg"]
    )
    assert cfg.optim.lr == pytest.approx(3e-4) and cfg.data.batch_size == 2 and cfg.model.head == "fg"
    assert cfg.data.train[0].sample and cfg.data.val[0].include == ["MCF7_Phase_F4_2_00d00h00m_4"]
    full = load_config(REPO / "configs" / "livecell.yaml")
    assert full.trainer.precision == "bf16-mixed" and full.data.crop_size == 512
    # round trip through config.json
    d = config_to_dict(cfg)
    (tmp_path / "c.json").write_text(json.dumps(d))
    assert config_to_dict(load_config(tmp_path / "c.json")) == d
    assert d["model"]["head"] == "fg" and d["loss"]["kind"] == "bce_dice"
    with pytest.raises(LivecellError, match="unknown key.*lrr"):
        load_config(None, ["optim.lrr=1"])
    with pytest.raises(LivecellError, match="optim.lr: expected a number"):
        load_config(None, ["optim.lr=fast"])
    with pytest.raises(LivecellError, match="unknown head"):
        load_config(None, ["model.head=cells"])
    with pytest.raises(LivecellError, match="set it whole"):
        load_config(None, ["data.val.0.folder=x"])
    d = apply_overrides({"data": {"train": [{"sample": True}]}}, ["data.train.0.exclude=[a, b]"])
    assert d["data"]["train"][0]["exclude"] == ["a", "b"]
    with pytest.raises(LivecellError, match="key=value"):
        load_config(None, ["optim.lr"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim: [1, 2\n")
    with pytest.raises(InputFileError, match="bad.yaml: invalid config"):
        load_config(bad)
    with pytest.raises(InputFileError, match="missing.yaml: config file not found"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(LivecellError, match=r"data.train\[0\]: give exactly one"):
        load_config(None, ["data.train=[{folder: a, sample: true}]"])


def test_cli_print_config_and_bad_input(tmp_path):
    from livecell_seg.cli import main

    assert (
        main(
            ["train", "--config", str(REPO / "configs/sample_cpu.yaml"), "--print-config", "--set", "seed=3"]
        )
        == 0
    )
    assert main(["train", "--config", str(tmp_path / "nope.yaml")]) == 2


# --------------------------------------------------------------------------------------- training


@pytest.mark.parametrize("head", ["fg", "fg+boundary", "fg+dist"])
def test_smoke_training_per_head(tmp_path, data_dir, head):
    from livecell_seg.model.folder import load_model_dir
    from livecell_seg.training.trainer import train

    run = train(tiny_config(data_dir, tmp_path / "run", head))
    losses = [v for _, v in train_losses(run)]
    assert len(losses) == 12
    assert all(v == v and abs(v) < 1e6 for v in losses)  # finite
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3  # falling
    for rel in (
        "config.json",
        "model.pt",
        "summary.json",
        "model/config.json",
        "model/model.pt",
        "checkpoints/last.ckpt",
        "logs/csv/version_0/metrics.csv",
    ):
        assert (run / rel).is_file(), rel
    assert list((run / "logs" / "tensorboard").rglob("events.out.tfevents*"))
    assert list((run / "checkpoints").glob("best-*.ckpt"))
    summary = json.loads((run / "summary.json").read_text())
    assert summary["global_step"] == 12 and summary["head"] == head and 0 <= summary["best_val_mSA"] <= 1
    config = json.loads((run / "config.json").read_text())
    assert config["model"]["head"] == head and config["loss"]["kind"] == "bce_dice"
    loaded = load_model_dir(run / "model")
    assert loaded.head == head and loaded.model_config.base_features == 4
    # the training cell diameter (for predict --scale auto): the disks have radius 4..8
    assert 8 <= loaded.model_config.cell_diameter <= 17
    rows = [r for r in csv.DictReader((run / "logs/csv/version_0/metrics.csv").open()) if r.get("val/mSA")]
    assert len(rows) == 3 and all(0 <= float(r["val/mSA"]) <= 1 for r in rows)


def test_validation_scores_what_predict_gets(tmp_path, data_dir):
    """Validation segments each image with predict's segment_image (zoom 1, default
    post-processing): its mSA is what `predict` gets from the saved model folder, also after the
    weights change; the training network is left as it was."""
    import torch

    from livecell_seg.evaluation.metrics import segmentation_accuracies
    from livecell_seg.inference.postprocess import PostprocessParams
    from livecell_seg.inference.predict import segment_image
    from livecell_seg.io import read_image, read_labels
    from livecell_seg.model.folder import load_model_dir, save_model_dir
    from livecell_seg.training.dataset import FullImageDataset, resolve_sources
    from livecell_seg.training.trainer import SegModule, _collate_val

    torch.manual_seed(0)
    cfg = tiny_config(data_dir, tmp_path / "run", "fg")
    module = SegModule(config_to_dict(cfg))
    module.log = lambda *args, **kwargs: None  # no trainer here
    batch = _collate_val([FullImageDataset(resolve_sources(cfg.data.val), "fg")[0]])
    opt = torch.optim.Adam(module.net.parameters(), lr=0.01)
    image, truth = read_image(data_dir / "images/img_0.tif"), read_labels(data_dir / "labels/img_0.tif")
    scores = []
    for steps in (60, 10):  # fit the one image (a segmentation worth scoring), validate, fit more
        module.net.train()
        for _ in range(steps):
            loss, _ = module.loss_fn(module.net(batch["image"]), batch["target"])
            opt.zero_grad()
            loss.backward()
            opt.step()
        module.net.eval()  # as Lightning does for validation
        state = {k: v.clone() for k, v in module.net.state_dict().items()}
        with torch.inference_mode():
            module.validation_step(batch, 0)
        assert not module.net.training
        assert all(torch.equal(v, module.net.state_dict()[k]) for k, v in state.items())
        save_model_dir(tmp_path / "m", module.net, {"model": config_to_dict(cfg)["model"]})
        res = segment_image(load_model_dir(tmp_path / "m"), image, PostprocessParams(), scale=1.0)
        sa = segmentation_accuracies(truth, res.labels)
        assert module._val_scores[-1] == pytest.approx((float(sa.mean()), float(sa[0])), abs=1e-6)
        scores.append(module._val_scores[-1][0])
    assert scores[0] > 0.3 and scores[0] != scores[1], scores


def test_resume_continues_from_same_step(tmp_path, data_dir):
    from livecell_seg.training.trainer import train

    out = tmp_path / "run"
    every2 = ("trainer.val_every_n_epochs=2",)
    first = train(tiny_config(data_dir, out, extra=("optim.epochs=1", *every2)))
    s1 = json.loads((first / "summary.json").read_text())
    # no validation yet, but last.ckpt is written after every epoch; the export falls back to it
    assert s1["global_step"] == 4 and s1["best_val_mSA"] is None and s1["checkpoint"] == "last.ckpt"
    assert not list((out / "checkpoints").glob("best-*"))
    run = train(tiny_config(data_dir, out, extra=("optim.epochs=4", *every2)))  # resume: auto
    summary = json.loads((run / "summary.json").read_text())
    assert summary["global_step"] == 16 and summary["resumed_from"].endswith("last.ckpt")
    assert summary["best_val_mSA"] is not None and summary["checkpoint"].startswith("best-")
    steps = [s for s, _ in train_losses(run)]
    assert steps == list(range(16))  # steps 0-3 from the first run, 4-15 after resuming: no gap, no repeat
    val_epochs = [
        r["epoch"]
        for r in csv.DictReader((run / "logs/csv/version_1/metrics.csv").open())
        if r.get("val/mSA")
    ]
    assert val_epochs == ["1", "3"]
    with pytest.raises(LivecellError, match="no checkpoint to resume"):
        train(tiny_config(data_dir, tmp_path / "fresh", extra=("resume=true",)))


def test_ddp_two_cpu_processes(tmp_path, data_dir):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "livecell_seg", "train", "--devices", "2", "--strategy", "ddp", "--set"]
    cmd += tiny_overrides(data_dir, out) + ["optim.epochs=1", "optim.max_steps=2", "trainer.loggers=[csv]"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    env.pop("MASTER_PORT", None)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=HANG_S, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["global_step"] == 2
    assert (out / "model" / "model.pt").is_file()
