"""``livecell-seg finetune`` and :mod:`livecell_seg.training.finetune` (issue 25): tiny models, small
images, a few steps; time boxes on a fake clock."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import tifffile

from livecell_seg.cli import main
from livecell_seg.errors import LivecellError

torch = pytest.importorskip("torch")

from livecell_seg.model.folder import (  # noqa: E402
    ModelConfig,
    build_model,
    load_model_dir,
    model_to_dict,
    save_model_dir,
)
from livecell_seg.training import finetune as ft  # noqa: E402
from livecell_seg.training.finetune import CorrectedImage, Recipe, finetune  # noqa: E402

#: no replay (the 5 sample images), small crops: a step of the tiny network takes milliseconds
FAST = Recipe(replay=0, crop=32, batch=2, warmup=0)


@pytest.fixture(scope="module")
def base(tmp_path_factory, keep_torch_threads) -> Path:
    """A tiny BatchNorm U-Net folder that records a cell diameter and --scale auto."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    cfg = ModelConfig(head="fg+dist", base_features=4, depth=2, cell_diameter=12.0, predict_scale="auto")
    net = build_model(cfg).eval()
    d = tmp_path_factory.mktemp("base")
    save_model_dir(d, net, {"model": model_to_dict(cfg), "loss": {"kind": "bce_dice"}}, {"min_size": 5})
    (d / "provenance.json").write_text(json.dumps({"training": {"recipe": "random"}, "scores": {}}))
    return d


def discs(seed: int = 0, shape: tuple[int, int] = (64, 80), n: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """A grey image of bright discs and its labels 1..n (one piece each, no holes)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    labels = np.zeros(shape, np.int32)
    k = 0
    for _ in range(200):
        cy, cx, r = rng.integers(8, shape[0] - 8), rng.integers(8, shape[1] - 8), rng.integers(4, 7)
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        if (labels[disc] == 0).all() and (labels[np.roll(disc, 2, 0) | np.roll(disc, 2, 1)] == 0).all():
            k += 1
            labels[disc] = k
            if k == n:
                break
    img = (40 + 150 * (labels > 0) + rng.normal(0, 10, shape)).clip(0, 255).astype(np.uint8)
    return img, labels


def weights(folder: Path) -> dict:
    return torch.load(folder / "model.pt", weights_only=True)


def test_new_folder_loads_predicts_keeps_architecture_diameter_and_records_provenance(base, tmp_path):
    from livecell_seg.inference.predict import model_fingerprint, segment_image

    img, lab = discs()
    out = finetune([CorrectedImage("a.tif", img, lab)], tmp_path / "new", base, steps=3, recipe=FAST)
    new, old = load_model_dir(out), load_model_dir(base)
    assert model_to_dict(new.model_config) == model_to_dict(old.model_config)  # head, arch, cell_diameter
    assert new.model_config.cell_diameter == 12.0
    assert segment_image(new, img).labels.shape == img.shape
    assert (out / "postprocess.json").is_file() and not (out / ft.STATE_FILE).exists()
    changed = [
        k for k, v in weights(out).items() if v.is_floating_point() and not torch.equal(v, weights(base)[k])
    ]
    assert changed  # it trained
    rec = json.loads((out / "provenance.json").read_text())
    f = rec["finetune"]
    assert f["complete"] and f["steps"] == 3 and f["steps_asked"] == 3
    assert f["base_model"] == str(base) and f["base_fingerprint"] == model_fingerprint(base)
    assert f["images"][0]["name"] == "a.tif" and f["images"][0]["image_sha256"] == ft._sha256(img)
    assert f["recipe"]["lr"] == FAST.lr and f["cell_diameter"] == 12.0 and f["seconds"] >= 0
    assert rec["base_provenance"] == {"training": {"recipe": "random"}}
    assert json.loads((out / "config.json").read_text())["init_from"] == str(base)


def test_it_trains_at_the_zoom_predict_auto_chooses_for_the_corrected_cells(base, tmp_path, monkeypatch):
    """The corrected cells measure 8 px against the model's 12: --scale auto, once it finds them,
    zooms by 1.5, and so does the training (image and labels rescaled). The base model's own
    cells (here 20 px, zoom 0.6) do not decide it: they are the ones that were wrong."""
    import livecell_seg.inference.predict as predict_mod
    from livecell_seg.inference.predict import auto_zoom_for, segment_image

    img, lab = discs()
    fake = lambda labels: 8.0 if labels is lab else 20.0  # noqa: E731
    monkeypatch.setattr(predict_mod, "estimate_diameter", fake)
    monkeypatch.setattr(ft, "estimate_diameter", fake)
    assert segment_image(load_model_dir(base), img, scale="auto").scale == 0.6  # the base's wrong cells
    want = auto_zoom_for(8.0, 12.0)
    assert want == 1.5 == ft.training_zoom(load_model_dir(base), lab)
    seen = []
    real = ft._prepare
    monkeypatch.setattr(ft, "_prepare", lambda *a: seen.append(a[2]) or real(*a))
    out = finetune([CorrectedImage("a", img, lab)], tmp_path / "z", base, steps=1, recipe=FAST)
    assert seen == [want]
    assert json.loads((out / "provenance.json").read_text())["finetune"]["zooms"] == [want]
    prepared = real(img, lab, want, "fg+dist")
    assert prepared.image.shape == (96, 120) and prepared.targets.shape[1:] == (96, 120)
    assert load_model_dir(out).model_config.cell_diameter == 12.0  # not the image's 8 px


def test_batchnorm_statistics_stay_the_base_models(base, tmp_path):
    img, lab = discs()
    out = finetune([CorrectedImage("a", img, lab)], tmp_path / "bn", base, steps=2, recipe=FAST)
    old, new = weights(base), weights(out)
    stats = [k for k in old if k.endswith(("running_mean", "running_var"))]
    assert stats and all(torch.equal(old[k], new[k]) for k in stats)
    # without the guard they move (the test can fail)
    loose = finetune(
        [CorrectedImage("a", img, lab)],
        tmp_path / "bn2",
        base,
        steps=2,
        recipe=replace(FAST, freeze_bn=False),
    )
    assert any(not torch.equal(old[k], weights(loose)[k]) for k in stats)


def test_distillation_loss_is_zero_for_the_base_and_grows_away_from_it():
    x = torch.randn(2, 2, 8, 8)
    assert float(ft.distillation_loss(x, x)) == pytest.approx(0.0, abs=1e-6)
    assert float(ft.distillation_loss(x + 1.0, x)) > 0.01
    net = build_model(ModelConfig(head="fg+dist", base_features=4, depth=2)).train()
    assert ft.freeze_batchnorm(net) > 0
    assert not any(m.training for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d))


def test_replay_crops_are_distilled_towards_the_base(base, tmp_path, monkeypatch):
    """With replay, the sample images enter each batch and the distillation term is computed."""
    calls = []
    real = ft.distillation_loss
    monkeypatch.setattr(ft, "distillation_loss", lambda s, t: calls.append(s.shape) or real(s, t))
    img, lab = discs()
    out = finetune(
        [CorrectedImage("a", img, lab)],
        tmp_path / "r",
        base,
        steps=2,
        recipe=Recipe(replay=1, batch=2, crop=32),
    )
    assert calls == [(1, 3, 32, 32)] * 2  # fg+dist: 3 channels
    assert len(json.loads((out / "provenance.json").read_text())["finetune"]["replay_images"]) == 5


def test_should_stop_leaves_a_usable_folder_and_the_same_call_resumes(base, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="livecell_seg")
    img, lab = discs()
    ex = [CorrectedImage("a", img, lab)]
    whole = finetune(ex, tmp_path / "whole", base, steps=6, recipe=FAST)
    polls = iter([False, False, True])
    out = finetune(ex, tmp_path / "cut", base, steps=6, recipe=FAST, should_stop=lambda: next(polls))
    f = json.loads((out / "provenance.json").read_text())["finetune"]
    assert not f["complete"] and f["steps"] == 2 and (out / ft.STATE_FILE).is_file()
    assert "stopped at step 2 of 6" in caplog.text and "resume" in caplog.text
    assert load_model_dir(out).params.min_size == 5  # the base watershed
    from livecell_seg.inference.predict import segment_image

    assert segment_image(load_model_dir(out), img).labels.shape == img.shape  # usable
    out = finetune(ex, tmp_path / "cut", base, steps=6, recipe=FAST)
    f = json.loads((out / "provenance.json").read_text())["finetune"]
    assert f["complete"] and f["steps"] == 6 and f["resumed_from_steps"] == [2]
    assert not (out / ft.STATE_FILE).exists()
    a, b = weights(whole), weights(out)
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-6) for k in a)  # as if never stopped
    caplog.clear()
    finetune(ex, tmp_path / "cut", base, steps=6, recipe=FAST)  # done: returns at once
    assert "already fine-tuned" in caplog.text


def test_ctrl_c_keeps_a_usable_folder_and_says_so(base, tmp_path, caplog):
    img, lab = discs()
    polls = iter([False, KeyboardInterrupt])

    def stop() -> bool:
        v = next(polls)
        if v is KeyboardInterrupt:
            raise KeyboardInterrupt
        return v

    with pytest.raises(KeyboardInterrupt):
        finetune(
            [CorrectedImage("a", img, lab)], tmp_path / "c", base, steps=5, recipe=FAST, should_stop=stop
        )
    assert "interrupted at step 1 of 5" in caplog.text
    f = json.loads((tmp_path / "c" / "provenance.json").read_text())["finetune"]
    assert f["steps"] == 1 and not f["complete"]
    load_model_dir(tmp_path / "c")


class _FakeClock:
    def __init__(self, step: float) -> None:
        self.t, self.step = 0.0, step

    def __call__(self) -> float:
        self.t += self.step
        return self.t


def test_minutes_stop_the_training_on_a_fake_clock(base, tmp_path, monkeypatch):
    img, lab = discs()
    ex = [CorrectedImage("a", img, lab)]

    def steps(name: str, **kw) -> int:
        monkeypatch.setattr(ft, "_clock", _FakeClock(step=10.0))  # 10 s per reading
        out = finetune(ex, tmp_path / name, base, recipe=FAST, **kw)
        return json.loads((out / "provenance.json").read_text())["finetune"]["steps"]

    assert steps("free", steps=8) == 8
    boxed = steps("boxed", minutes=1.0)  # 60 s: a few readings, no step count given
    assert 0 < boxed < 8
    assert steps("both", steps=8, minutes=1.0) == boxed


def _corrections_on_disk(tmp_path: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    from livecell_seg.inference.outputs import write_geojson, write_rois_zip
    from livecell_seg.io import write_labels

    img, lab = discs(n=10)
    imgs = tmp_path / "images"
    imgs.mkdir()
    tifffile.imwrite(imgs / "x.tif", img)
    write_labels(tmp_path / "labels" / "x.tif", lab)
    write_rois_zip(tmp_path / "pred" / "rois" / "x.zip", lab)  # where predict --rois writes it
    write_geojson(tmp_path / "gj" / "x.geojson", lab, img)
    return imgs, img, lab


def test_label_tiffs_roi_zips_and_geojson_give_the_same_examples(tmp_path):
    from livecell_seg.training.corrections import load_corrections

    imgs, img, lab = _corrections_on_disk(tmp_path)
    for kind, folder in (("labels", "labels"), ("rois", "pred"), ("geojson", "gj")):
        (ex,) = load_corrections([imgs], tmp_path / folder, kind)
        assert ex.name == "x.tif" and np.array_equal(ex.image, img), kind
        assert np.array_equal(ex.labels, lab), kind


def test_geojson_holes_and_pieces_round_trip(tmp_path):
    from livecell_seg.inference.outputs import write_geojson
    from livecell_seg.training.corrections import read_geojson

    lab = np.zeros((40, 40), np.int32)
    lab[5:30, 5:30] = 1
    lab[12:20, 12:20] = 0  # a hole
    lab[14:17, 14:17] = 2  # a cell inside the hole
    lab[33:37, 2:6] = 1  # a second piece of cell 1
    lab[33:38, 30:38] = 3
    write_geojson(tmp_path / "h.geojson", lab, lab.astype(np.uint8))
    assert np.array_equal(read_geojson(tmp_path / "h.geojson", lab.shape), lab)


def _cli(tmp_path: Path, base: Path, imgs: Path, *extra: str) -> int:
    return main(
        [
            "finetune",
            "--images",
            str(imgs),
            "--model",
            str(base),
            "--out",
            str(tmp_path / "m"),
            "--threads",
            "1",
            *extra,
        ]
    )


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda d: (d / "labels" / "x.tif").unlink(), ["x.tif", "no labels for this image"]),
        (
            lambda d: tifffile.imwrite(d / "labels" / "x.tif", np.zeros((64, 80), np.uint16)),
            ["labels/x.tif", "holds no cell"],
        ),
        (
            lambda d: tifffile.imwrite(d / "labels" / "x.tif", np.ones((30, 80), np.uint16)),
            ["labels/x.tif", "do not match the image"],
        ),
    ],
)
def test_bad_label_inputs_are_one_line_naming_the_file(tmp_path, base, capsys, make, words):
    imgs, _, _ = _corrections_on_disk(tmp_path)
    make(tmp_path)
    assert _cli(tmp_path, base, imgs, "--labels", str(tmp_path / "labels")) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    for w in words:
        assert w in err, (w, err)


def test_bad_geojson_and_zip_are_one_line_naming_the_file(tmp_path, base, capsys):
    imgs, _, _ = _corrections_on_disk(tmp_path)
    (tmp_path / "gj" / "x.geojson").write_text("<html>not json</html>")
    assert _cli(tmp_path, base, imgs, "--geojson", str(tmp_path / "gj")) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "gj/x.geojson" in err, err
    (tmp_path / "pred" / "rois" / "x.zip").write_bytes(b"PK\x03\x04 truncated")
    assert _cli(tmp_path, base, imgs, "--rois", str(tmp_path / "pred")) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "rois/x.zip" in err and "not a readable zip" in err, err


def test_the_command_fine_tunes_from_roi_zips(tmp_path, base, capsys):
    imgs, _, _ = _corrections_on_disk(tmp_path)
    assert _cli(tmp_path, base, imgs, "--rois", str(tmp_path / "pred"), "--steps", "2") == 0
    assert "new model folder" in capsys.readouterr().out
    f = json.loads((tmp_path / "m" / "provenance.json").read_text())["finetune"]
    assert f["steps"] == 2 and f["recipe"]["replay"] == Recipe().replay


def test_api_refuses_bad_examples_in_one_line(base, tmp_path):
    img, lab = discs()
    for ex, words in (
        (CorrectedImage("m", img, lab[:10]), "do not match"),
        (CorrectedImage("e", img, np.zeros_like(lab)), "no cell"),
        (CorrectedImage("f", img, lab.astype(float)), "integers"),
    ):
        with pytest.raises(LivecellError, match=words):
            finetune([ex], tmp_path / "o", base, steps=1, recipe=FAST)
    with pytest.raises(LivecellError, match="steps"):
        finetune([CorrectedImage("a", img, lab)], tmp_path / "o", base, steps=0, recipe=FAST)
    with pytest.raises(LivecellError, match="base model folder"):
        finetune([CorrectedImage("a", img, lab)], base, base, steps=1, recipe=FAST)
