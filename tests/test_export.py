"""Export (ONNX, bioimage.io package) and the onnxruntime predict backend, used as a user would.

One model folder (a copy of the bundled model, whatever it is) is exported to ONNX once with the
CLI; the bioimage.io package reuses that ONNX file, and bioimage.io's own validator and model test
check the package; the zoo's prediction on a real image, fed to ``livecell-seg postprocess``, must
give the labels ``livecell-seg predict`` gives.
"""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from livecell_seg.cli import main
from livecell_seg.data import sample_paths
from livecell_seg.io import list_images, read_image, read_labels

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

SAMPLES = list_images(sample_paths()[1])


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """A copy of the bundled model folder with ``model.onnx`` exported by the CLI."""
    from livecell_seg.model.folder import default_model_dir

    d = tmp_path_factory.mktemp("model") / "m"
    shutil.copytree(default_model_dir(), d)
    cfg = json.loads((d / "config.json").read_text())
    if not cfg["model"].get("cell_diameter"):  # --scale auto and the package's cell-size note need one
        cfg["model"]["cell_diameter"] = 30.0
    cfg["model"]["predict_scale"] = "auto"  # predict zooms by default (as the bundled model does)
    (d / "config.json").write_text(json.dumps(cfg, indent=2))
    assert main(["export", "--model", str(d), "--format", "onnx", "--out", str(d / "model.onnx")]) == 0
    return d


@pytest.fixture()
def isolated_cache(tmp_path, monkeypatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("LIVECELL_SEG_CACHE", str(cache))
    return cache


def test_onnx_output_equals_pytorch_on_a_sample_image(model_dir):
    import onnxruntime as ort
    import torch

    from livecell_seg.inference.network_export import FINGERPRINT_KEY, model_fingerprint
    from livecell_seg.inference.tiling import predict_maps
    from livecell_seg.io import normalize_image
    from livecell_seg.model.folder import load_model_dir

    model = load_model_dir(model_dir)
    img = read_image(SAMPLES[0])[:512, :704]  # a real 704 x 520 image, cropped to the stride grid
    session = ort.InferenceSession(str(model_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    assert session.get_modelmeta().custom_metadata_map[FINGERPRINT_KEY] == model_fingerprint(model_dir)
    x = normalize_image(img)[None, None]
    (onnx_out,) = session.run(None, {"input": x})
    # the reference: the network as trained (no folding), in eval mode, plus sigmoid
    with torch.no_grad():
        ref = torch.sigmoid(model.net.eval()(torch.from_numpy(x))).numpy()
    assert onnx_out.shape == ref.shape == (1, model.model_config.out_channels, 512, 704)
    assert np.abs(onnx_out - ref).max() <= 1e-4
    assert np.abs(onnx_out[0] - predict_maps(model, img)).max() <= 1e-4
    # dynamic batch and size: two images of another size in one call
    x2 = np.concatenate([x[..., :256, :320], x[..., 256:, 384:]])
    (y2,) = session.run(None, {"input": np.ascontiguousarray(x2)})
    with torch.no_grad():
        ref2 = torch.sigmoid(model.net(torch.from_numpy(np.ascontiguousarray(x2)))).numpy()
    assert y2.shape == (2, model.model_config.out_channels, 256, 320)
    assert np.abs(y2 - ref2).max() <= 1e-4


def test_predict_backend_onnxruntime_gives_the_torch_labels(model_dir, tmp_path, isolated_cache, monkeypatch):
    """With --scale auto (zooms chosen per image from the segmentations) and --geojson: the same
    files as the torch backend."""
    from livecell_seg.inference.onnx_backend import OnnxRuntimeNet

    calls = []
    forward = OnnxRuntimeNet.forward
    monkeypatch.setattr(OnnxRuntimeNet, "forward", lambda self, x: calls.append(1) or forward(self, x))
    inputs = [str(p) for p in SAMPLES[:2]]
    common = ["predict", "--model", str(model_dir), "--input", *inputs, "-q", "--save-maps"]
    common += ["--scale", "auto", "--geojson"]
    assert main([*common, "--out", str(tmp_path / "torch")]) == 0
    assert not calls  # the torch backend never touches onnxruntime
    assert main([*common, "--out", str(tmp_path / "ort"), "--backend", "onnxruntime"]) == 0
    assert calls  # ... and --backend onnxruntime ran the network with it
    assert not isolated_cache.exists()  # the folder's model.onnx was used, nothing exported again
    for p in SAMPLES[:2]:
        a = read_labels(tmp_path / "torch" / f"{p.stem}.tif")
        b = read_labels(tmp_path / "ort" / f"{p.stem}.tif")
        assert a.max() > 10
        np.testing.assert_array_equal(a, b)
        ma = np.load(tmp_path / "torch" / "maps" / f"{p.stem}.npy").astype(np.float32)
        mb = np.load(tmp_path / "ort" / "maps" / f"{p.stem}.npy").astype(np.float32)
        assert np.abs(ma - mb).max() <= 1e-3  # float16 files: one rounding step at most
        ga = json.loads((tmp_path / "torch" / f"{p.stem}.geojson").read_text())
        gb = json.loads((tmp_path / "ort" / f"{p.stem}.geojson").read_text())
        assert len(ga["features"]) == len(gb["features"]) == len(np.unique(a)) - 1


def test_predict_backend_onnxruntime_zooms_like_torch(model_dir):
    """A zoom that is not 1 (an image size off the stride grid, as --scale auto and --diameter
    make): the same maps and labels as torch."""
    from livecell_seg.inference.onnx_backend import load_onnx_model
    from livecell_seg.inference.predict import segment_image
    from livecell_seg.model.folder import load_model_dir

    torch_model = load_model_dir(model_dir)
    ort_model = load_onnx_model(model_dir, num_threads=1)
    img = read_image(SAMPLES[3])
    a = segment_image(torch_model, img, scale=0.7)
    b = segment_image(ort_model, img, scale=0.7)
    assert a.maps.shape == b.maps.shape == (a.maps.shape[0], *img.shape)
    assert np.abs(a.maps - b.maps).max() <= 1e-4
    np.testing.assert_array_equal(a.labels, b.labels)


def test_predict_backend_onnxruntime_on_a_local_dask_worker(model_dir, tmp_path, isolated_cache, monkeypatch):
    """predict --backend onnxruntime --local-workers N: the workers run the network with ONNX
    Runtime and write the labels serial onnxruntime predict writes."""
    pytest.importorskip("distributed")
    from livecell_seg.inference import distributed as dist
    from livecell_seg.inference import runner
    from livecell_seg.inference.predict import PredictSettings
    from livecell_seg.inference.runner import predict_paths

    # the command line hands the backend to the Dask runner
    seen = {}
    real_run_images = dist.run_images
    monkeypatch.setattr(runner, "run_images", lambda *a, **k: seen.update(k) or real_run_images(*a, **k))
    img = str(SAMPLES[0])
    argv = ["predict", "--model", str(model_dir), "-i", img, "--threads", "1", "--scale", "1", "-q"]
    assert (
        main([*argv, "--out", str(tmp_path / "cli"), "--local-workers", "1", "--backend", "onnxruntime"]) == 0
    )
    assert seen["settings"].backend == "onnxruntime"
    # ... and the worker's network is an ONNX Runtime session
    kinds = []

    def on_outcome(outcome, client):
        def probe():  # runs on the worker (a local function: sent by value)
            from livecell_seg.inference.distributed import _WORKER_MODEL

            return [type(m.net).__name__ for m in _WORKER_MODEL.values()]

        kinds.extend(client.run(probe).values())

    opts = PredictSettings(scale=1.0, backend="onnxruntime", num_threads=1)
    cluster = dist.ClusterOptions(local_workers=1)
    summary = real_run_images([SAMPLES[0]], tmp_path / "dask", cluster, model_dir=model_dir,
                              settings=opts, progress=False, on_outcome=on_outcome)  # fmt: skip
    assert summary.ok and kinds == [["OnnxRuntimeNet"]]
    serial = predict_paths([SAMPLES[0]], tmp_path / "serial", model_dir, backend="onnxruntime", scale=1.0,
                           num_threads=1, progress=False)  # fmt: skip
    assert serial.ok and not isolated_cache.exists()  # the folder's model.onnx everywhere
    stem = SAMPLES[0].stem
    ref = read_labels(tmp_path / "serial" / f"{stem}.tif")
    assert ref.max() > 10
    for run in ("cli", "dask"):
        np.testing.assert_array_equal(read_labels(tmp_path / run / f"{stem}.tif"), ref)


def test_onnxruntime_backend_tiles_and_tta_match_torch(model_dir):
    from livecell_seg.inference.onnx_backend import load_onnx_model
    from livecell_seg.inference.tiling import predict_maps
    from livecell_seg.model.folder import load_model_dir

    torch_model = load_model_dir(model_dir)
    ort_model = load_onnx_model(model_dir, num_threads=1)
    img = read_image(SAMPLES[1])
    for kw in ({"whole": False, "tile": 256}, {"tta": "flips"}):
        a = predict_maps(torch_model, img, **kw)
        b = predict_maps(ort_model, img, **kw)
        assert np.abs(a - b).max() <= 1e-4, kw


def test_stale_model_onnx_is_not_used(model_dir, tmp_path, isolated_cache, monkeypatch, caplog):
    """A model.onnx exported from other weights is ignored: the network is exported (to the cache)."""
    import onnx

    from livecell_seg.inference import onnx_backend
    from livecell_seg.inference.network_export import FINGERPRINT_KEY, model_fingerprint

    d = tmp_path / "m"
    shutil.copytree(model_dir, d)
    assert model_fingerprint(d) == model_fingerprint(model_dir)
    cfg = json.loads((d / "config.json").read_text())
    cfg["model"]["cell_diameter"] = 123.0  # not part of the network: the same fingerprint
    cfg["model"]["predict_scale"] = 0.5
    (d / "config.json").write_text(json.dumps(cfg))
    assert model_fingerprint(d) == model_fingerprint(model_dir)
    cfg["model"]["dropout"] = 0.5  # a different architecture record -> another fingerprint
    (d / "config.json").write_text(json.dumps(cfg))
    assert model_fingerprint(d) != model_fingerprint(model_dir)
    exported = []

    def fake_export(model, out):  # copy the good file, stamped with the new fingerprint (fast)
        proto = onnx.load(str(model_dir / "model.onnx"))
        for p in proto.metadata_props:
            if p.key == FINGERPRINT_KEY:
                p.value = model_fingerprint(model.path)
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        onnx.save(proto, str(out))
        exported.append(Path(out))

    monkeypatch.setattr(onnx_backend, "export_onnx", fake_export)
    caplog.set_level("INFO", "livecell_seg")
    session, path = onnx_backend.onnx_session_for(d)
    assert exported == [path] and path.parent == isolated_cache / "onnx"
    notes = [r.getMessage() for r in caplog.records if r.name == "livecell_seg.inference.onnx_backend"]
    assert len(notes) == 1 and notes[0].startswith(f"exporting {d} to ONNX once (cached as {path};")
    session, path2 = onnx_backend.onnx_session_for(d)  # second time: from the cache, no note
    assert path2 == path and len(exported) == 1
    assert sum(r.name == "livecell_seg.inference.onnx_backend" for r in caplog.records) == 1


def test_bioimageio_package_passes_bioimageio_validator_and_model_test(model_dir, tmp_path):
    pytest.importorskip("bioimageio.core")
    from bioimageio.core import test_model
    from bioimageio.spec import load_description

    from livecell_seg.model.folder import load_model_dir

    pkg = tmp_path / "livecell.zip"
    rc = main(
        [
            "export",
            "--model",
            str(model_dir),
            "--format",
            "bioimageio",
            "--out",
            str(pkg),
            "--author",
            "Ada Lovelace",
            "--no-test",  # bioimageio.core's test runs below, directly
        ]
    )
    assert rc == 0 and pkg.is_file()
    descr = load_description(str(pkg), perform_io_checks=True)
    assert descr.validation_summary.status == "valid-format", descr.validation_summary.format()
    summary = test_model(str(pkg))
    assert summary.status == "passed", summary.format()
    tested = {d.name for d in summary.details}
    for fmt in ("pytorch_state_dict", "torchscript", "onnx"):
        assert any(fmt in name for name in tested), (fmt, tested)

    # what the issue asks of the package
    assert [a.name for a in descr.authors] == ["Ada Lovelace"]
    assert str(descr.license) == "CC-BY-NC-4.0"
    assert any(str(c.doi) == "10.1038/s41592-021-01249-6" for c in descr.cite)
    stride = load_model_dir(model_dir).stride  # 2**depth of the model folder
    assert descr.covers and descr.inputs[0].axes[2].size.step == stride
    assert descr.inputs[0].axes[2].size.min == 4 * stride
    with zipfile.ZipFile(pkg) as z:
        names = set(z.namelist())
        readme = z.read("README.md").decode()
        pp = json.loads(z.read("postprocess.json"))
        arch_src = z.read("unet.py").decode()
    assert {"rdf.yaml", "unet.py", "weights.pt", "weights.onnx", "postprocess.json", "cover.png"} <= names
    assert "livecell-seg postprocess" in readme and "postprocess.json" in readme
    diameter = json.loads((model_dir / "config.json").read_text())["model"]["cell_diameter"]
    assert f"cells of about {diameter:.0f} px diameter" in readme and "--scale auto" in readme
    assert "does that by default for this model (`predict_scale: auto`" in readme
    assert pp == json.loads((model_dir / "postprocess.json").read_text())
    # the architecture source is standalone: it imports torch only
    imported = {
        (n.module if isinstance(n, ast.ImportFrom) else a.name).split(".")[0]
        for n in ast.walk(ast.parse(arch_src))
        if isinstance(n, (ast.Import, ast.ImportFrom))
        for a in n.names
    }
    assert imported <= {"torch", "__future__"}, imported


def test_zoo_prediction_then_livecell_postprocess_equals_livecell_predict(model_dir, tmp_path):
    """A zoo user: bioimageio.core runs the package on a real image, livecell-seg postprocess turns
    the maps into cells: the labels are those of livecell-seg predict."""
    pytest.importorskip("bioimageio.core")
    import tifffile
    from bioimageio.core import predict

    from livecell_seg.bioimageio_export import export_bioimageio
    from livecell_seg.model.folder import load_model_dir

    model = load_model_dir(model_dir)
    pkg = tmp_path / "p.zip"
    export_bioimageio(model, pkg, test=False)
    img = read_image(SAMPLES[2])[:512, :704]
    tifffile.imwrite(tmp_path / "img.tif", img)
    # bioimageio.core applies the package's preprocessing, runs the network, saves (1, C, H, W)
    predict(model=str(pkg), inputs={"input": img[None, None]}, save_output_path=tmp_path / "maps" / "img.npy")
    maps = np.load(tmp_path / "maps" / "img.npy")
    assert maps.shape == (1, model.model_config.out_channels, 512, 704)
    assert main(["postprocess", "--maps", str(tmp_path / "maps"), "--out", str(tmp_path / "zoo"),
                 "--params", str(model_dir)]) == 0  # fmt: skip
    assert main(["predict", "--model", str(model_dir), "--input", str(tmp_path / "img.tif"),
                 "--out", str(tmp_path / "ours"), "-q", "--scale", "1"]) == 0  # fmt: skip
    zoo = read_labels(tmp_path / "zoo" / "img.tif")
    ours = read_labels(tmp_path / "ours" / "img.tif")
    assert ours.max() > 10
    np.testing.assert_array_equal(zoo, ours)


def test_export_errors_are_one_line(tmp_path, capsys):
    assert main(["export", "--format", "onnx", "--out", str(tmp_path / "m.zip")]) == 2
    assert "needs the .onnx suffix" in capsys.readouterr().err
    assert main(["export", "--format", "bioimageio", "--out", str(tmp_path / "m.onnx")]) == 2
    assert ".zip" in capsys.readouterr().err
    assert main(["export", "--model", str(tmp_path / "nope"), "--format", "onnx", "--out", "x.onnx"]) == 2
    assert "model folder not found" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_bioimageio_export_refuses_other_architectures(tmp_path):
    from livecell_seg.bioimageio_export import export_bioimageio
    from livecell_seg.errors import LivecellError
    from livecell_seg.model.folder import LoadedModel, ModelConfig, build_model

    cfg = ModelConfig(arch="monai_basicunet", head="fg", base_features=8)
    m = LoadedModel(net=build_model(cfg), model_config=cfg, path=tmp_path)
    with pytest.raises(LivecellError, match="arch 'unet'"):
        export_bioimageio(m, tmp_path / "p.zip")
    assert not list(tmp_path.iterdir())


def test_predict_onnxruntime_option_errors(tmp_path, capsys):
    img = str(SAMPLES[0])
    args = ["predict", "--input", img, "--out", str(tmp_path / "o"), "--backend", "onnxruntime", "-q"]
    assert main([*args, "--device", "cuda"]) == 2
    assert "runs on the CPU" in capsys.readouterr().err
    assert main([*args, "--precision", "bf16"]) == 2
    assert "bf16 needs the torch backend" in capsys.readouterr().err


def test_missing_optional_dependency_is_one_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "bioimageio.spec", None)  # as if the extra were not installed
    assert main(["export", "--format", "bioimageio", "--out", str(tmp_path / "p.zip")]) == 2
    err = capsys.readouterr().err
    assert "livecell-seg[bioimageio]" in err and len(err.strip().splitlines()) == 1


def test_cli_stays_lean_with_export_and_backend_options():
    probe = (
        "import sys, livecell_seg.cli as c\n"
        "for name in ('export', 'predict'): c.build_parser(only=name)\n"
        "print(sorted(m for m in ('torch', 'onnx', 'onnxruntime', 'bioimageio', 'pydantic') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_load_maps_accepts_a_leading_batch_axis(tmp_path):
    from livecell_seg.inference.postprocess import load_maps

    maps = np.random.default_rng(0).random((1, 3, 20, 30)).astype(np.float32)
    np.save(tmp_path / "m.npy", maps)
    got, head = load_maps(tmp_path / "m.npy")
    assert got.shape == (3, 20, 30) and head == "fg+dist"
    np.testing.assert_array_equal(got, maps[0])


def test_package_readme_describes_the_training_sources():
    from livecell_seg.bioimageio_export import _describe_training_data

    data = {
        "train": [
            {"sample": True, "weight": 2.0},
            {"folder": "../shared/kaggle", "annotation": "partial", "include_types": ["astro", "cort"]},
            {"json": "/data/livecell_train.json", "images": "imgs", "exclude": ["A172"]},
            {"folder": "more", "exclude": ["a", "b", "c", "d", "e"]},
        ],
        "balance": "cell_type",
    }
    text = _describe_training_data(data)
    assert text == (
        "the 5 LIVECell images bundled with livecell-seg (CC BY-NC 4.0) (weight 2); "
        "kaggle (partially annotated; include types astro, cort); "
        "livecell_train.json (exclude A172); more (exclude 5 names); balanced by cell type"
    )
    assert _describe_training_data({}) == "not recorded in the model folder"
