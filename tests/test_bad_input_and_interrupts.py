"""Issue 14: no crash, no silent wrong answer, no lost file, on hostile or careless input.

One test (or a few) per listed problem; each failed before its fix. Cases that used to kill the
interpreter (segfaults in pycocotools) run the CLI in a subprocess.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest
import tifffile

from conftest import HANG_S
from livecell_seg.cli import main
from livecell_seg.errors import InputFileError, LivecellError

NAME = "A172_Phase_C7_1_00d00h00m_1.tif"
H, W = 64, 80


def _square(x: float, y: float, s: float) -> list[float]:
    return [x, y, x + s, y, x + s, y + s, x, y + s]


def _gt(path: Path, anns: list[dict] | None = None, h: int = H, w: int = W) -> Path:
    if anns is None:
        anns = [{"segmentation": [_square(5 + 20 * i, 10, 12)]} for i in range(3)]
    d = {
        "images": [{"id": 1, "file_name": NAME, "height": h, "width": w}],
        "annotations": [
            {"id": k, "image_id": 1, "category_id": 1, "iscrowd": 0, **a} for k, a in enumerate(anns, 1)
        ],
        "categories": [{"id": 1, "name": "cell"}],
    }
    path.write_text(json.dumps(d))  # json.dumps writes NaN / Infinity as Python's json reads them
    return path


def _cli(*args: str, env: dict | None = None, timeout: float = HANG_S) -> subprocess.CompletedProcess:
    """The CLI in a child process: a segfault shows as a negative return code instead of killing pytest."""
    e = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "livecell_seg", *args], capture_output=True, text=True, env=e, timeout=timeout
    )


def _one_line_error(err: str) -> None:
    assert "Traceback" not in err
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert lines and lines[-1].startswith("livecell-seg"), err


# ------------------------------------------------------------------------------------------------
# 1. evaluate: crashes on bad coordinates and RLE; polygon results json
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["pycocotools", "faster"])
def test_evaluate_nan_and_huge_polygons_in_gt_are_dropped_not_a_crash(tmp_path, backend):
    anns = [
        {"segmentation": [_square(5, 10, 12)]},
        {"segmentation": [[float("nan"), 1.0, 5.0, 5.0, 9.0, 1.0]]},
        {"segmentation": [[1e12, 1.0, 5.0, 5e11, -9e13, 1.0]]},
        {"segmentation": [_square(40, 10, 12)], "area": float("nan"), "iscrowd": "x"},
    ]
    gt = _gt(tmp_path / "gt.json", anns)
    res = [{"image_id": 1, "segmentation": [_square(5, 10, 12)], "score": 0.9}]
    (tmp_path / "res.json").write_text(json.dumps(res))
    r = _cli("evaluate", "--gt", str(gt), "--pred", str(tmp_path / "res.json"), "--json-out",
             str(tmp_path / "m.json"), "--backend", backend, "--quiet")  # fmt: skip
    assert r.returncode == 0, (r.returncode, r.stderr[-2000:])
    m = json.loads((tmp_path / "m.json").read_text())
    assert m["n_gt_instances"] == 3  # the NaN polygon is dropped, the huge one clipped to the image
    assert any("left out of the AP ground truth" in w for w in m["warnings"])


@pytest.mark.parametrize(
    "seg, problem",
    [
        ([[float("nan"), 1.0, 5.0, 5.0, 9.0, 1.0]], "not all finite"),
        ([["a", 1, 5, 5, 9, 1]], "not all finite"),
        ({"size": [H, W], "counts": [10, 5]}, "malformed RLE"),  # runs do not cover the image
        ({"size": [H, W], "counts": "0000"}, "malformed RLE"),
        ({"size": [H, W], "counts": "\x7f\x7f"}, "malformed RLE"),
        ({"size": [H, W], "counts": [H * W + 100, 0]}, "malformed RLE"),  # writes past the mask
    ],
)
def test_evaluate_malformed_results_are_one_line(tmp_path, seg, problem):
    gt = _gt(tmp_path / "gt.json")
    (tmp_path / "res.json").write_text(json.dumps([{"image_id": 1, "segmentation": seg, "score": 0.5}]))
    r = _cli("evaluate", "--gt", str(gt), "--pred", str(tmp_path / "res.json"), "--json-out",
             str(tmp_path / "m.json"), "--backend", "pycocotools", "--quiet")  # fmt: skip
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    _one_line_error(r.stderr)
    assert "res.json" in r.stderr and "detection 0" in r.stderr and problem in r.stderr
    assert not (tmp_path / "m.json").exists()


def test_results_json_with_polygons_scores_like_the_same_masks_as_rle(tmp_path):
    from pycocotools import mask as mask_utils

    from livecell_seg.evaluation.evaluate import evaluate

    gt = _gt(tmp_path / "gt.json")
    polys = [[_square(5, 10, 12)], [_square(26, 11, 11)], [_square(45, 10, 12)]]
    as_poly = [{"image_id": 1, "segmentation": p, "score": 0.9 - 0.1 * k} for k, p in enumerate(polys)]
    as_rle = []
    for d in as_poly:
        rle = mask_utils.merge(mask_utils.frPyObjects(d["segmentation"], H, W))
        as_rle.append({**d, "segmentation": {"size": [H, W], "counts": rle["counts"].decode()}})
    (tmp_path / "poly.json").write_text(json.dumps(as_poly))
    (tmp_path / "rle.json").write_text(json.dumps(as_rle))
    m_poly = evaluate(gt, tmp_path / "poly.json").metrics
    m_rle = evaluate(gt, tmp_path / "rle.json").metrics
    assert m_poly["AP"] == m_rle["AP"] and m_poly["mSA"] == m_rle["mSA"]
    assert 0 < m_poly["AP"] < 100  # one detection is off: a real, non-trivial score


def test_rle_checker_agrees_with_pycocotools():
    from pycocotools import mask as mask_utils

    from livecell_seg.data.coco import _rle_string_counts, checked_rle

    rng = np.random.default_rng(0)
    for _ in range(50):
        h, w = rng.integers(1, 40, 2)
        m = np.asfortranarray(rng.random((h, w)) < rng.random())
        rle = mask_utils.encode(m.astype(np.uint8))
        counts = _rle_string_counts(rle["counts"])
        assert counts is not None and counts.sum() == h * w
        # pycocotools' own reading of the same string, through its uncompressed form
        back = mask_utils.decode({"size": [int(h), int(w)], "counts": rle["counts"]})
        assert np.array_equal(back.astype(bool), m)
        assert checked_rle({"size": [int(h), int(w)], "counts": rle["counts"].decode()}, h, w) is not None
        runs = np.diff(np.flatnonzero(np.diff(np.r_[0, m.T.ravel().astype(int), 2]) != 0), prepend=0)
        assert runs.sum() == h * w
    assert checked_rle({"size": [4, 4], "counts": "1"}, 4, 4) is None  # runs add up to 1 of 16


# ------------------------------------------------------------------------------------------------
# 2. decompression bombs: headers first, a documented limit
# ------------------------------------------------------------------------------------------------
def _zeros_tiff(path: Path, side: int) -> Path:
    tile = np.zeros((512, 512), np.uint8)
    n = ((side + 511) // 512) ** 2
    tifffile.imwrite(path, (tile for _ in range(n)), shape=(side, side), dtype=np.uint8, tile=(512, 512),
                     compression="zlib")  # fmt: skip
    return path


def test_image_above_the_limit_is_refused_from_its_header(tmp_path, monkeypatch):
    from livecell_seg.io import read_image

    bomb = _zeros_tiff(tmp_path / "bomb.tif", 2048)  # 4.2 megapixels in ~20 KB
    assert bomb.stat().st_size < 100_000
    from PIL import Image

    Image.fromarray(np.zeros((2048, 2048), np.uint8)).save(tmp_path / "bomb.png")
    monkeypatch.setenv("LIVECELL_MAX_PIXELS", "1000000")
    for f in (bomb, tmp_path / "bomb.png"):
        tracemalloc.start()
        with pytest.raises(
            InputFileError, match=r"2048x2048 pixels.*above the limit of 1\.0 megapixels.*LIVECELL_MAX_PIXELS"
        ):
            read_image(f)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < 1_000_000, peak  # nothing decoded (the pixels are 4.2 MB)
    monkeypatch.setenv("LIVECELL_MAX_PIXELS", "5e6")
    assert read_image(bomb).shape == (2048, 2048)
    monkeypatch.setenv("LIVECELL_MAX_PIXELS", "lots")
    with pytest.raises(LivecellError, match="LIVECELL_MAX_PIXELS"):
        read_image(bomb)


def test_default_limit_refuses_a_105_megapixel_tiff_in_eda(tmp_path, capsys):
    (tmp_path / "in").mkdir()
    bomb = _zeros_tiff(tmp_path / "in" / NAME, 10240)
    assert bomb.stat().st_size < 1_000_000
    from livecell_seg.io import read_image

    with pytest.raises(
        InputFileError, match="10240x10240 pixels .104.9 megapixels., above the limit of 100.0"
    ):
        read_image(bomb)
    gt = _gt(tmp_path / "gt.json")
    assert main(["eda", "--json", str(gt), "--images", str(tmp_path / "in"), "--out", str(tmp_path / "eda"),
                 "--no-progress"]) == 2  # fmt: skip
    assert "none of the 1 annotated images found" in capsys.readouterr().err  # counted as unreadable


def test_coco_json_declaring_a_huge_image_is_refused_and_convert_leaves_nothing(tmp_path, capsys):
    gt = _gt(tmp_path / "gt.json", h=1_000_000, w=1_000_000)
    out = tmp_path / "labels"
    assert main(["convert", "--json", str(gt), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "1000000x1000000 pixels" in err and "gt.json" in err
    assert not out.exists()
    assert (
        main(["evaluate", "--gt", str(gt), "--pred", str(tmp_path), "--json-out", str(tmp_path / "m.json")])
        == 2
    )
    assert "above the limit" in capsys.readouterr().err


def test_convert_failing_after_the_scan_removes_its_manifest(tmp_path, monkeypatch, capsys):
    import livecell_seg.data.convert as C

    def boom(task):  # noqa: ANN001
        raise LivecellError("cannot write")

    monkeypatch.setattr(C, "_work", boom)
    out = tmp_path / "labels"
    assert (
        main(["convert", "--json", str(_gt(tmp_path / "gt.json")), "--out", str(out), "--workers", "1"]) == 2
    )
    assert not out.exists()


# ------------------------------------------------------------------------------------------------
# 3. silent wrong answers
# ------------------------------------------------------------------------------------------------
def test_nan_pixels_and_stacks_are_refused_but_rgb_is_read(tmp_path):
    from livecell_seg.io import read_image

    img = np.random.default_rng(0).random((32, 40)).astype(np.float32)
    img[3, 4] = np.nan
    tifffile.imwrite(tmp_path / "nan.tif", img)
    with pytest.raises(InputFileError, match="NaN or infinite"):
        read_image(tmp_path / "nan.tif")
    img[3, 4] = np.inf
    tifffile.imwrite(tmp_path / "inf.tif", img)
    with pytest.raises(InputFileError, match="NaN or infinite"):
        read_image(tmp_path / "inf.tif")
    frames = np.stack([np.full((32, 40), v, np.uint8) for v in (10, 100, 200)])
    tifffile.imwrite(tmp_path / "stack_ij.tif", frames, imagej=True)
    tifffile.imwrite(tmp_path / "stack_z.tif", frames, metadata={"axes": "ZYX"})
    for name in ("stack_ij.tif", "stack_z.tif"):
        with pytest.raises(InputFileError, match="holds 3 images"):
            read_image(tmp_path / name)
    rgb = np.zeros((32, 40, 3), np.uint8)
    rgb[..., 1] = 200
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    tifffile.imwrite(
        tmp_path / "rgb_planar.tif", np.moveaxis(rgb, -1, 0), photometric="rgb", planarconfig="separate"
    )
    for name in ("rgb.tif", "rgb_planar.tif"):
        g = read_image(tmp_path / name)
        assert g.shape == (32, 40) and int(g[0, 0]) == round(0.587 * 200)


@pytest.mark.parametrize(
    "params, problem",
    [
        ({"fg_threshold": float("nan")}, "fg_threshold must be a finite number"),
        ({"fg_threshold": 1.5}, "fg_threshold must be in [0, 1]"),
        ({"min_size": -5}, "min_size must not be negative"),
        ({"h": float("inf")}, "h must be a finite number"),
        ({"min_distance": 1e400}, "invalid parameter value"),
        ({"fg_threshold": True}, "fg_threshold: expected a number, got True"),  # issue 22: was 1.0
        ({"smooth": 200}, "smooth must be at most 20"),  # issue 22: asked for 58 TiB
        ({"keep_unseeded": 0.5}, "keep_unseeded: not a boolean"),
    ],
)
def test_invalid_postprocess_parameters_are_one_line(tmp_path, capsys, params, problem):
    (tmp_path / "maps").mkdir()
    np.save(tmp_path / "maps" / "a.npy", np.full((1, 16, 16), 0.9, np.float32))
    (tmp_path / "p.json").write_text(json.dumps(params))
    rc = main(["postprocess", "--maps", str(tmp_path / "maps"), "--out", str(tmp_path / "o"),
               "--params", str(tmp_path / "p.json")])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 2 and "p.json" in err and problem in err, err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "model, problem", [({"head": "fg+magic"}, "unknown head"), ({"depth": -1}, "depth must be an integer")]
)
def test_model_folder_with_bad_architecture_is_one_line(tmp_path, capsys, model, problem):
    pytest.importorskip("torch")
    d = tmp_path / "model"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"model": model}))
    (d / "model.pt").write_bytes(b"")
    Image = pytest.importorskip("PIL.Image")
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(tmp_path / "x.png")
    rc = main(["predict", "--model", str(d), "-i", str(tmp_path / "x.png"), "-o", str(tmp_path / "o"), "-q"])
    err = capsys.readouterr().err
    assert rc == 2 and "config.json" in err and problem in err, err


# ------------------------------------------------------------------------------------------------
# 4. lost files
# ------------------------------------------------------------------------------------------------
def test_postprocess_into_its_own_maps_folder_is_refused(tmp_path, capsys):
    maps = tmp_path / "maps"
    maps.mkdir()
    tifffile.imwrite(maps / "a.tif", np.full((1, 16, 16), 0.9, np.float32))
    before = (maps / "a.tif").read_bytes()
    rc = main(["postprocess", "--maps", str(maps), "--out", str(maps), "--overwrite"])
    err = capsys.readouterr().err
    assert rc == 2 and "overwritten by its own output" in err
    assert (maps / "a.tif").read_bytes() == before
    np.save(maps / "a.npy", np.full((1, 16, 16), 0.9, np.float32))  # a.npy and a.tif -> one a.tif
    assert (
        main(
            ["postprocess", "--maps", str(maps / "a.npy"), str(maps / "a.tif"), "--out", str(tmp_path / "o")]
        )
        == 2
    )
    assert "would both write" in capsys.readouterr().err


def test_zip_entry_never_replaces_an_existing_folder_or_file(tmp_path):
    from livecell_seg.data.download import extract_zip

    out = tmp_path / "out"
    (out / "images" / "keep").mkdir(parents=True)
    (out / "images" / "keep" / "x.tif").write_bytes(b"precious")
    (out / "notes").write_text("mine")
    for name, member in (("a.zip", "images"), ("b.zip", "images/keep"), ("c.zip", "notes/x.txt")):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            z.writestr("other/ok.txt", "fine")
            z.writestr(member, "a file where a folder is" if member != "notes/x.txt" else "x")
        (tmp_path / name).write_bytes(buf.getvalue())
        with pytest.raises(InputFileError, match="not replacing it"):
            extract_zip(tmp_path / name, out)
    assert (out / "images" / "keep" / "x.tif").read_bytes() == b"precious"
    assert (out / "notes").read_text() == "mine"
    assert not (out / "other").exists()  # refused before anything moved


# ------------------------------------------------------------------------------------------------
# 5. interruptions: SIGTERM like Ctrl+C, stale .part files swept, fsync
# ------------------------------------------------------------------------------------------------
def test_sigterm_cleans_up_like_ctrl_c(tmp_path, monkeypatch, capsys):
    import livecell_seg.commands.synth as synth_cmd
    from livecell_seg.io import atomic_path

    def run(args):  # noqa: ANN001
        with atomic_path(tmp_path / "out.bin") as tmp:
            tmp.write_bytes(b"half")
            os.kill(os.getpid(), signal.SIGTERM)
        return 0

    monkeypatch.setattr(synth_cmd, "run", run)
    assert main(["synth", "--out", str(tmp_path / "s")]) == 128 + signal.SIGTERM
    assert "terminated" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # no .part file, no output
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # restored


@pytest.mark.parametrize("sender", ["this thread", "another thread"])
def test_an_interrupt_while_the_temporary_file_is_created_leaves_no_part_file(tmp_path, monkeypatch, sender):
    # CI once caught SIGTERM landing between mkstemp and the clean-up's knowledge of the file; and
    # once more when another thread of the process (napari, Dask, torch) took the signal while
    # the main thread held it blocked
    import tempfile
    import threading

    from livecell_seg.io import atomic_path

    real_mkstemp = tempfile.mkstemp
    go, sent = threading.Event(), threading.Event()

    def other_thread() -> None:  # started before the signals are held back: it does not block them
        if go.wait(HANG_S) and sender == "another thread" and not sent.is_set():
            os.kill(os.getpid(), signal.SIGINT)
        sent.set()

    helper = threading.Thread(target=other_thread, daemon=True)
    helper.start()

    def mkstemp_then_interrupted(*a, **k):  # noqa: ANN002, ANN003, ANN202
        made = real_mkstemp(*a, **k)
        if sender == "this thread":
            os.kill(os.getpid(), signal.SIGINT)  # arrives while the file exists but is not yet returned
        else:
            go.set()
            sent.wait(HANG_S)
            for _ in range(1000):  # bytecodes in which an undeferred KeyboardInterrupt would land
                pass
        return made

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp_then_interrupted)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # whatever ran before us
    try:
        with pytest.raises(KeyboardInterrupt):
            with atomic_path(tmp_path / "out.bin") as tmp:
                tmp.write_bytes(b"never")
    finally:
        sent.set()  # (the helper sends nothing more)
        go.set()
        helper.join(HANG_S)
        signal.signal(signal.SIGINT, previous)
    assert list(tmp_path.iterdir()) == []


def test_the_slurm_runner_does_not_take_over_ctrl_c():
    # dask_jobqueue's runner module installs sys.exit() as the SIGINT handler when imported: a
    # later Ctrl+C then exited 0 in silence (and broke the test above in CI, run after it).
    pytest.importorskip("dask_jobqueue")
    code = (
        "import signal\n"
        "signal.signal(signal.SIGINT, signal.default_int_handler)\n"  # a background job starts ignoring it
        "from livecell_seg.inference.distributed import _import_jobqueue\n"
        "_import_jobqueue()\n"
        "print(signal.getsignal(signal.SIGINT) is signal.default_int_handler)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"


def test_stale_part_files_of_dead_processes_are_swept(tmp_path):
    from livecell_seg.io import _HOST, atomic_path, sweep_stale_parts

    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    pid = int(dead.stdout)
    (tmp_path / "sub").mkdir()
    stale = [
        tmp_path / f".a.tif.{_HOST}-{pid}-abc123.part",
        tmp_path / "sub" / f".b.npy.{_HOST}-{pid}-x_9.part",
    ]
    keep = [
        tmp_path / f".c.tif.{_HOST}-{os.getpid()}-abc.part",  # a live process (this one)
        tmp_path / f".d.tif.otherhost-{pid}-abc.part",  # another machine's run on a shared disk
        tmp_path / "images.zip.part",  # a resumable download
    ]
    for f in stale + keep:
        f.write_bytes(b"x")
    assert sorted(sweep_stale_parts(tmp_path)) == sorted(stale)
    assert all(f.exists() for f in keep)
    with atomic_path(tmp_path / "e.tif") as tmp:
        assert tmp.name.startswith(f".e.tif.{_HOST}-{os.getpid()}-")


def test_part_file_target_names_the_final_file(tmp_path):
    """The Dask runner removes a dead worker's ``.part`` files by the output they were for."""
    from livecell_seg.io import atomic_path, part_file_target

    with atomic_path(tmp_path / "a.b.tif") as tmp:
        assert part_file_target(tmp.name) == "a.b.tif"
    assert part_file_target(".x.npy.some_host-12-ab_9.part") == "x.npy"
    for other in ("images.zip.part", ".x.npy.part", ".x.npy.host-pid-ab.part", "x.tif"):
        assert part_file_target(other) is None


def test_atomic_writes_are_flushed_to_disk_before_the_rename(tmp_path, monkeypatch):
    from livecell_seg import io as lio

    calls = []
    real = os.fsync
    monkeypatch.setattr(lio.os, "fsync", lambda fd: (calls.append(fd), real(fd)))
    lio.write_json_atomic(tmp_path / "a.json", {"x": 1})
    assert len(calls) >= 1


# ------------------------------------------------------------------------------------------------
# 6. predict paths
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_model(random_model_dir, keep_torch_threads) -> Path:
    return random_model_dir("fg", base_features=2, depth=1, name="m")


def _png(path: Path, seed: int = 0) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (24, 32), dtype=np.uint8)).save(path)
    return path


def _predict(model: Path, *args: str) -> int:
    return main(["predict", "--model", str(model), "--threads", "1", "-q", *args])


def test_predict_out_is_a_file_or_would_overwrite_an_input(tmp_path, tiny_model, capsys):
    x = _png(tmp_path / "a" / "x.png")
    (tmp_path / "f").write_text("not a folder")
    assert _predict(tiny_model, "-i", str(x), "-o", str(tmp_path / "f")) == 2
    assert "is not a folder" in capsys.readouterr().err
    t = tmp_path / "a" / "t.tif"
    tifffile.imwrite(t, np.zeros((24, 32), np.uint8))
    before = t.read_bytes()
    assert _predict(tiny_model, "-i", str(t), "-o", str(tmp_path / "a")) == 2  # a/t.tif -> a/t.tif
    assert "overwritten by its own output" in capsys.readouterr().err
    assert t.read_bytes() == before and sorted(q.name for q in (tmp_path / "a").iterdir()) == [
        "t.tif",
        "x.png",
    ]


def test_predict_out_may_be_a_parent_of_the_inputs_and_nothing_is_dropped(tmp_path, tiny_model, capsys):
    x = _png(tmp_path / "a" / "imgs" / "x.png")
    y = _png(tmp_path / "b" / "y.png", 1)
    assert _predict(tiny_model, "-i", str(tmp_path / "a" / "imgs"), str(y), "-o", str(tmp_path / "a")) == 0
    assert (tmp_path / "a" / "x.tif").is_file() and (tmp_path / "a" / "y.tif").is_file()
    assert _predict(tiny_model, "-i", str(x), str(y), "-o", str(tmp_path / "a"), "--overlay") == 0
    # running again on the folder that now holds outputs: the outputs are ignored, and said so
    assert _predict(tiny_model, "-i", str(tmp_path / "a"), "-o", str(tmp_path / "a"), "--overlay") == 0
    err = capsys.readouterr().err
    assert "ignored 4 file(s)" in err and "outputs of an earlier run" in err


def test_resume_keeps_output_names_when_a_same_stem_input_is_added(tmp_path, tiny_model):
    a = _png(tmp_path / "b" / "x.png")
    out = tmp_path / "out"
    assert _predict(tiny_model, "-i", str(a), "-o", str(out)) == 0
    first = (out / "x.tif").read_bytes()
    c = _png(tmp_path / "a" / "x.png", 5)  # sorts before b/x.png
    assert _predict(tiny_model, "-i", str(c), str(a), "-o", str(out), "--resume") == 0
    assert (out / "x.tif").read_bytes() == first  # still b/x.png's result
    names = json.loads((out / "predict_names.json").read_text())
    assert names[str(a.resolve())] == "x" and names[str(c.resolve())] == "x-2"


# ------------------------------------------------------------------------------------------------
# 7. download integrity (a local server; see test_download.py)
# ------------------------------------------------------------------------------------------------
def test_only_https_or_a_local_server(tmp_path):
    from livecell_seg.data.download import BASE_URL, check_url, download

    assert BASE_URL.startswith("https://")
    check_url("http://127.0.0.1:8000/x")
    check_url("http://localhost/x")
    with pytest.raises(LivecellError, match="plain http"):
        check_url("http://example.org/x")
    with pytest.raises(LivecellError, match="only https"):
        download(tmp_path, base_url="ftp://example.org/")


def test_sha256_file_parsing(tmp_path):
    from livecell_seg.data.download import read_sha256_file

    (tmp_path / "s").write_text("# comment\n" + "A" * 64 + "  images.zip\n" + "b" * 64 + " *./x/y.json\n")
    assert read_sha256_file(tmp_path / "s") == {"images.zip": "a" * 64, "x/y.json": "b" * 64}
    (tmp_path / "bad").write_text("123 images.zip\n")
    with pytest.raises(InputFileError, match="line 1"):
        read_sha256_file(tmp_path / "bad")


# ------------------------------------------------------------------------------------------------
# 8. app: upload limit, caches bounded by memory
# ------------------------------------------------------------------------------------------------
def test_app_upload_limit_and_memory_bounded_cache(tmp_path):
    from livecell_seg.app import MAX_UPLOAD_MB, streamlit_command
    from livecell_seg.interactive import MemoryCache, decode_image

    assert f"--server.maxUploadSize={MAX_UPLOAD_MB}" in streamlit_command(8501)
    cache = MemoryCache(10_000_000)
    calls = []
    for k in range(4):
        v = cache.get(k, lambda k=k: (calls.append(k), np.zeros(3_000_000, np.uint8))[1])
        assert v.nbytes == 3_000_000
    assert len(cache) == 3 and cache.nbytes <= 10_000_000
    cache.get(3, lambda: pytest.fail("a hit must not recompute"))
    cache.get(0, lambda: calls.append("again") or np.zeros(1, np.uint8))  # 0 was evicted (least recent)
    assert "again" in calls
    big = cache.get("big", lambda: np.zeros(20_000_000, np.uint8))  # larger than the budget: not kept
    assert big.size == 20_000_000 and cache.nbytes <= 10_000_000
    bomb = _zeros_tiff(tmp_path / "b.tif", 7680)  # 59 megapixels > the app's 50
    with pytest.raises(InputFileError, match="use `livecell-seg predict`"):
        decode_image("b.tif", bomb.read_bytes())


def test_a_zoom_cannot_bypass_the_pixel_limit(tmp_path, tiny_model, capsys, monkeypatch):
    x = _png(tmp_path / "x.png")  # 32 x 24
    monkeypatch.setenv("LIVECELL_MAX_PIXELS", "100000")
    assert _predict(tiny_model, "-i", str(x), "-o", str(tmp_path / "o"), "--scale", "20") == 1
    err = capsys.readouterr().err
    assert "x.png: zoomed by 20: the image is 640x480 pixels" in err and "above the limit" in err
