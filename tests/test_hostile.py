"""Issue 22, the second hostile audit: one class of problem per section, each test failing before its fix.

Unbounded work from one option or input; tracebacks instead of one line; silently wrong answers;
lost data; wrong or misleading messages. Generated inputs for the same classes are in
``tests/test_properties.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import errno
import io
import json
import os
import subprocess
import sys
import typing
from pathlib import Path

import numpy as np
import pytest
import tifffile

from conftest import HANG_S
from livecell_seg.cli import COMMANDS, build_parser, main
from livecell_seg.data import sample_paths

SAMPLE_JSON, SAMPLE_IMAGES = sample_paths()


def _one_line(err: str, *needles: str) -> str:
    """The stderr of a refused command: no traceback, one ``livecell-seg CMD: error:`` line at the end."""
    assert "Traceback" not in err, err[-3000:]
    lines = [
        ln for ln in err.strip().splitlines() if ln.strip() and not ln.startswith(("predict:", "evaluate:"))
    ]
    assert lines and lines[-1].startswith("livecell-seg ") and ": error: " in lines[-1], err[-3000:]
    for n in needles:
        assert n in lines[-1], (n, lines[-1])
    return lines[-1]


def _json(path: Path, obj: object) -> Path:
    path.write_text(json.dumps(obj))
    return path


def _sample_doc() -> dict:
    return json.loads(SAMPLE_JSON.read_text())


@pytest.fixture(scope="module")
def tiny_model(random_model_dir, keep_torch_threads) -> Path:
    return random_model_dir("fg", base_features=2, depth=1, name="m")


def _img(path: Path, seed: int = 0, shape: tuple[int, ...] = (24, 32), dtype: str = "uint8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    a = (np.random.default_rng(seed).random(shape) * 250).astype(dtype)
    tifffile.imwrite(path, a)
    return path


def _predict(model: Path, *args: str) -> int:
    return main(["predict", "--model", str(model), "--threads", "1", "-q", *args])


# ------------------------------------------------------------------------------------------------
# 1. unbounded work: every size, count and kernel parameter has an upper bound, checked first
# ------------------------------------------------------------------------------------------------
def _numeric_actions(name: str) -> list[argparse.Action]:
    parser = build_parser(only=name)
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return [a for a in sub.choices[name]._actions if a.type is not None and a.type is not str]


def test_every_numeric_option_of_every_command_has_a_range():
    """No option parses a number with a bare ``int``/``float`` (which takes NaN, inf and 1e9):
    each uses a type from ``livecell_seg.options`` that knows its range."""
    seen = 0
    for name in COMMANDS:
        for a in _numeric_actions(name):
            if a.type is type(Path()) or a.type is Path:
                continue
            assert a.type not in (int, float), (name, a.option_strings)
            assert hasattr(a.type, "bounds"), (name, a.option_strings, a.type)
            seen += 1
    assert seen >= 35  # the walk did find the options


@pytest.mark.parametrize(
    "argv, problem",
    [
        (["synth", "--out", "o", "--density", "1e9"], "--density: the value must be in (0, 20]"),
        (["synth", "--out", "o", "--density", "nan"], "must be a finite number"),
        (["synth", "--out", "o", "--size", "100000x100000"], "above the limit of 100.0 megapixels"),
        (["synth", "--out", "o", "--n-images", "1e12"], "--n-images: the value must be in [1, 100000]"),
        (["demo", "--minutes", "nan"], "--minutes: the value must be a finite number"),
        (["download", "--timeout", "nan"], "--timeout: the value must be a finite number"),
        (["download", "--timeout", "inf"], "--timeout"),
        (["predict", "-i", "x", "-o", "y", "--scale", "1e-9"], "--scale: the value must be in [0.05, 20]"),
        (["predict", "-i", "x", "-o", "y", "--overlap", "0.999"], "--overlap: the value must be in [0, 0.75]"),
        (["predict", "-i", "x", "-o", "y", "--tile", "100000"], "--tile"),
        (["evaluate", "--gt", "g", "--pred", "p", "--max-images", "-2"], "--max-images: the value must be in [1,"),
        (["timecourse", "-i", "x", "-o", "y", "--min-r2", "nan"], "--min-r2: the value must be a finite number"),
        (["timecourse", "-i", "x", "-o", "y", "--pixel-size", "-1"], "--pixel-size"),
        (["convert", "--json", "j", "--out", "o", "--workers", "100000"], "--workers"),
        (["app", "--port", "70000"], "--port"),
    ],
)  # fmt: skip
def test_numbers_are_refused_where_they_are_parsed(argv, problem, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    _one_line(err, problem)
    assert len(err.strip().splitlines()) == 1
    assert not any(tmp_path.iterdir())  # nothing was started


def test_synth_within_its_bounds_still_works(tmp_path):
    assert (
        main(["synth", "--out", str(tmp_path / "s"), "--n-images", "1", "--size", "64x64", "--density", "20"])
        == 0
    )
    d = json.loads((tmp_path / "s" / "annotations" / "livecell_coco_synth.json").read_text())
    assert len(d["images"]) == 1 and len(d["annotations"]) >= 2


def test_postprocess_kernel_and_size_parameters_are_bounded(tmp_path, capsys):
    """``"smooth": 200`` asked scipy for 58 TiB; every parameter's hard limit comes from the heads
    registry (one place), also for parameters given from Python."""
    from livecell_seg.inference.postprocess import PostprocessParams
    from livecell_seg.model.heads import PARAM_SPECS

    assert {s.name for s in PARAM_SPECS if not s.probability} <= set(PostprocessParams.LIMITS)
    for spec in PARAM_SPECS:
        if spec.limit is not None and spec.name != "keep_unseeded":
            with pytest.raises(ValueError, match=f"{spec.name} must be at most"):
                PostprocessParams(
                    **{spec.name: type(getattr(PostprocessParams(), spec.name))(spec.limit + 1)}
                )
    (tmp_path / "maps").mkdir()
    np.save(tmp_path / "maps" / "a.npy", np.full((1, 16, 16), 0.9, np.float32))
    rc = main(["postprocess", "--maps", str(tmp_path / "maps"), "--out", str(tmp_path / "o"),
               "--params", str(_json(tmp_path / "p.json", {"smooth": 200}))])  # fmt: skip
    _one_line(capsys.readouterr().err, "p.json", "smooth must be at most 20")
    assert rc == 2


def test_every_numeric_setting_of_a_training_config_has_a_range():
    """The training config's sizes, counts and rates are bounded like the options (a crop of
    100,000 px or a U-Net 8,192 channels wide would take the machine's memory)."""
    from livecell_seg.dataclass_dicts import field_range
    from livecell_seg.training.config import TrainConfig, load_config

    def numeric(tp: object) -> bool:
        args = typing.get_args(tp) or (tp,)
        return any(a in (int, float) for a in args) or (typing.get_origin(tp) is dict)

    missing, walked = [], 0

    def walk(cls: type, prefix: str) -> None:
        nonlocal walked
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            tp = hints[f.name]
            inner = [a for a in (typing.get_args(tp) or (tp,)) if dataclasses.is_dataclass(a)]
            if inner:
                walk(inner[0], f"{prefix}{f.name}.")
            elif typing.get_origin(tp) is list and dataclasses.is_dataclass(typing.get_args(tp)[0]):
                walk(typing.get_args(tp)[0], f"{prefix}{f.name}.0.")
            elif numeric(tp) and tp is not bool:
                walked += 1
                if field_range(f) is None:
                    missing.append(prefix + f.name)

    walk(TrainConfig, "")
    assert walked >= 40 and missing == [], missing
    for override, problem in (
        ("optim.lr=nan", "optim.lr: expected a finite number"),
        ("optim.lr=.inf", "optim.lr: expected a finite number"),
        ("optim.lr=true", "optim.lr: expected a number"),
        ("data.crop_size=100000", "data.crop_size must be in [16, 8192]"),
        ("data.augment.blur=1e9", "data.augment.blur must be in [0, 20]"),
        ("model.depth=10", "channels at the deepest level"),
        ("trainer.devices=abc", "trainer.devices: expected auto, a number"),  # was a TypeError in Lightning
    ):
        with pytest.raises(Exception, match=None) as e:
            load_config(None, [override])
        assert problem in str(e.value), (override, str(e.value))


def test_a_runaway_pattern_is_stopped(tmp_path, capsys):
    """A ``--pattern`` with nested quantifiers is refused before it runs; one that backtracks
    catastrophically anyway (an alternation) is stopped by the time guard: one line, exit 2."""
    folder = tmp_path / "frames"
    _img(folder / ("1" * 40 + "x.tif"))
    argv = ["timecourse", "-i", str(folder), "-o", str(tmp_path / "o"), "--labels", str(tmp_path), "-q"]
    assert main([*argv, "--pattern", r"(?P<hours>(\d+)+)y"]) == 2
    _one_line(capsys.readouterr().err, "repeats a group that itself holds a repetition")
    assert main([*argv, "--pattern", r"(?P<hours>(1|1)*)y"]) == 2  # 2**40 ways to fail: never ends
    _one_line(capsys.readouterr().err, "backtracks catastrophically")


# ------------------------------------------------------------------------------------------------
# 2. tracebacks: one named line instead
# ------------------------------------------------------------------------------------------------
def _fail_writes(monkeypatch: pytest.MonkeyPatch, code: int) -> None:
    """Every atomic write fails as on a full (ENOSPC) or read-only (EROFS) file system."""
    import livecell_seg.io as lio

    def refuse(*_a: object, **_k: object) -> None:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(lio.os, "fsync", refuse)


@pytest.mark.parametrize(
    "code, words", [(errno.ENOSPC, "no space left on device"), (errno.EROFS, "read-only file system")]
)
def test_a_full_or_read_only_file_system_is_one_line_naming_the_file(tmp_path, tiny_model, monkeypatch, capsys, code, words):  # fmt: skip
    """Eight commands raised OSError (and the full-disk message named neither the file nor the
    cause); each now stops with one line naming the file it could not write."""
    x = _img(tmp_path / "in" / "x.tif")
    maps = tmp_path / "maps"
    maps.mkdir()
    np.save(maps / "a.npy", np.full((1, 16, 16), 0.9, np.float32))
    labels = tmp_path / "labels"
    _img(labels / "A_Phase_B2_1_00d00h00m_1.tif", dtype="uint16")
    predicted = tmp_path / "predicted"  # a label image named after each sample image
    for im in _sample_doc()["images"]:
        _img(
            predicted / (Path(im["file_name"]).stem + ".tif"),
            shape=(im["height"], im["width"]),
            dtype="uint16",
        )
    _img(tmp_path / "frames" / "A_Phase_B2_1_00d00h00m_1.tif")
    runs = {
        "synth": ["synth", "--out", str(tmp_path / "o1"), "--n-images", "1", "--size", "32x32"],
        "convert": ["convert", "--json", str(SAMPLE_JSON), "--out", str(tmp_path / "o2"), "--quiet"],
        "split": ["split", "--json", str(SAMPLE_JSON), "--out", str(tmp_path / "o3")],
        "eda": ["eda", "--json", str(SAMPLE_JSON), "--out", str(tmp_path / "o4"), "--no-progress"],
        "postprocess": ["postprocess", "--maps", str(maps), "--out", str(tmp_path / "o5")],
        "predict": ["predict", "--model", str(tiny_model), "-i", str(x), "-o", str(tmp_path / "o6"), "-q"],
        "timecourse": ["timecourse", "-i", str(tmp_path / "frames"), "--labels", str(labels), "-o",
                       str(tmp_path / "o7"), "-q", "--no-report"],
        "evaluate": ["evaluate", "--gt", str(SAMPLE_JSON), "--pred", str(predicted), "--json-out",
                     str(tmp_path / "o8" / "m.json"), "--quiet"],
    }  # fmt: skip
    _fail_writes(monkeypatch, code)
    for name, argv in runs.items():
        rc = main(argv)
        err = capsys.readouterr().err
        line = _one_line(err, words, "cannot be written")
        assert rc == 2, (name, err)
        assert str(tmp_path) in line, (name, line)  # names the file
        assert not list(tmp_path.rglob("*.part")), name


@pytest.mark.parametrize(
    "exc, words",
    [
        (OSError(errno.ENOSPC, "No space left on device", "/data/out/x.tif"), "/data/out/x.tif: no space left on device"),
        (MemoryError(), "out of memory"),
        (RecursionError("maximum recursion depth exceeded"), "nested too deeply"),
        (ValueError("bad\n" + "x" * 100_000), "invalid input (ValueError: bad)"),
        (OverflowError("int too big to convert"), "invalid input (OverflowError"),
    ],
)  # fmt: skip
def test_the_command_lines_last_line_of_defence(exc, words, monkeypatch, capsys):
    """Whatever no check foresaw (an OSError, MemoryError, RecursionError, ValueError from an
    input or the file system) still ends in one short line, exit 2, never a traceback or a dump."""
    import livecell_seg.commands.split as split_cmd

    def boom(_args: object) -> int:
        raise exc

    monkeypatch.setattr(split_cmd, "run", boom)
    assert main(["split", "--json", "x.json", "--out", "o"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and len(err) < 700, err[:1000]
    _one_line(err, words)


def test_json_nested_200000_deep_is_one_line_in_every_command(tmp_path, tiny_model, capsys):
    deep = tmp_path / "deep.json"
    deep.write_text('{"images": ' + "[" * 200_000 + "]" * 200_000 + ', "annotations": []}')
    flat_deep = tmp_path / "flat_deep.json"
    flat_deep.write_text("[" * 200_000 + "]" * 200_000)
    x = _img(tmp_path / "x.tif")
    (tmp_path / "maps").mkdir()
    np.save(tmp_path / "maps" / "a.npy", np.full((1, 16, 16), 0.9, np.float32))
    runs = [
        ["convert", "--json", str(deep), "--out", str(tmp_path / "o1")],
        ["evaluate", "--gt", str(deep), "--pred", str(tmp_path)],
        ["evaluate", "--gt", str(flat_deep), "--pred", str(tmp_path)],
        ["split", "--json", str(flat_deep), "--out", str(tmp_path / "o2")],
        ["eda", "--json", str(deep), "--out", str(tmp_path / "o3")],
        ["postprocess", "--maps", str(tmp_path / "maps"), "--out", str(tmp_path / "o4"), "--params", str(flat_deep)],
        ["predict", "--model", str(tiny_model), "-i", str(x), "-o", str(tmp_path / "o5"), "--params", str(flat_deep)],
        ["train", "--config", str(flat_deep)],
        ["tune", "--model", str(tiny_model), "--json", str(flat_deep), "--images", str(tmp_path)],
    ]  # fmt: skip
    for argv in runs:
        assert main(argv) == 2, argv
        _one_line(capsys.readouterr().err, "deep")


def test_ids_beyond_64_bits_and_nul_in_file_name_are_one_line(tmp_path, capsys):
    """ids of 2**70 raised OverflowError (and evaluate dumped 520 KB of annotations); a NUL byte in
    ``file_name`` ended in a traceback."""
    big_ann = _sample_doc()
    for a in big_ann["annotations"]:
        a["id"] += 2**70
    big_img = _sample_doc()
    first = big_img["images"][0]["id"]
    big_img["images"][0]["id"] = 2**70
    for a in big_img["annotations"]:
        if a["image_id"] == first:
            a["image_id"] = 2**70
    nul = _sample_doc()
    nul["images"][0]["file_name"] = "a\x00b.tif"
    for doc, words in ((big_ann, "outside the 64-bit range"), (big_img, "outside the 64-bit range"),
                       (nul, "control character")):  # fmt: skip
        j = _json(tmp_path / "gt.json", doc)
        for argv in (
            # convert and eda stream the annotations and never read their ids: image ids matter there
            *([["convert", "--json", str(j), "--out", str(tmp_path / "o")]] if doc is not big_ann else []),
            *(
                [["eda", "--json", str(j), "--out", str(tmp_path / "e"), "--no-progress"]]
                if doc is not big_ann
                else []
            ),
            ["evaluate", "--gt", str(j), "--pred", str(tmp_path), "--quiet"],
            ["split", "--json", str(j), "--out", str(tmp_path / "s")],
        ):
            rc = main(argv)
            err = capsys.readouterr().err
            assert rc == 2 and len(err) < 1000, (argv, err[:2000])
            _one_line(err, words)


def test_export_refuses_an_output_folder_and_a_name_with_dot_dot(tmp_path, capsys):
    (tmp_path / "m.onnx").mkdir()
    assert main(["export", "--format", "onnx", "-o", str(tmp_path / "m.onnx")]) == 2
    _one_line(capsys.readouterr().err, "is a folder")
    assert (
        main(["export", "--format", "bioimageio", "-o", str(tmp_path / "x.zip"), "--name", "../../evil"]) == 2
    )
    _one_line(capsys.readouterr().err, "--name '../../evil'")
    assert not (tmp_path / "x.zip").exists()


def test_eda_with_one_16_bit_image_among_8_bit_ones(tmp_path, capsys):
    import shutil

    images = tmp_path / "images"
    shutil.copytree(SAMPLE_IMAGES, images)
    one = sorted(images.rglob("*.tif"))[0]
    tifffile.imwrite(one, tifffile.imread(one).astype(np.uint16) * 200)
    assert main(["eda", "--json", str(SAMPLE_JSON), "--images", str(images), "--out", str(tmp_path / "e"),
                 "--no-progress"]) == 0  # fmt: skip
    assert "stored as uint16 and uint8" in capsys.readouterr().err
    assert (tmp_path / "e" / "index.html").stat().st_size > 1000


# ------------------------------------------------------------------------------------------------
# 3. silently wrong answers (exit 0)
# ------------------------------------------------------------------------------------------------
def test_two_images_sharing_one_id_are_an_error_naming_the_id(tmp_path, capsys):
    """They got each other's cells in convert and a wrong AP in evaluate (48.7 instead of 97.8)."""
    doc = _sample_doc()
    shared = doc["images"][0]["id"]
    doc["images"][1]["id"] = shared
    j = _json(tmp_path / "gt.json", doc)
    for argv in (
        ["convert", "--json", str(j), "--out", str(tmp_path / "o")],
        ["evaluate", "--gt", str(j), "--pred", str(tmp_path), "--quiet"],
        ["split", "--json", str(j), "--out", str(tmp_path / "s")],
        ["eda", "--json", str(j), "--out", str(tmp_path / "e"), "--no-progress"],
    ):
        assert main(argv) == 2, argv
        _one_line(capsys.readouterr().err, f"image id {shared} is used by two images")
    assert not (tmp_path / "o").exists()
    # the same image listed twice under one id (a harmless duplicate entry) is still merged
    doc = _sample_doc()
    doc["images"].append(dict(doc["images"][0]))
    assert (
        main(["convert", "--json", str(_json(tmp_path / "dup.json", doc)), "--out", str(tmp_path / "o2")])
        == 0
    )


@pytest.fixture(scope="module")
def bundled():
    from livecell_seg.inference.predict import load_model_for_predict

    try:
        return load_model_for_predict(None, "cpu")
    except Exception:  # noqa: BLE001
        pytest.skip("the bundled model is not installed")


def test_float_images_give_the_same_cells_whatever_their_units(bundled):
    """A float image scaled by 1e-9 or 1e300 gave 0 cells (an absolute contrast threshold, and
    float32 overflow); normalization is scale-invariant."""
    from livecell_seg.inference.predict import segment_image
    from livecell_seg.io import read_image

    img = read_image(sorted(SAMPLE_IMAGES.rglob("*.tif"))[0])[:192, :256].astype(np.float64)
    ref = segment_image(bundled, img, scale=1.0).labels
    assert ref.max() > 10
    for k in (1e-9, 1e-300, 1e300):
        got = segment_image(bundled, img * k, scale=1.0).labels
        assert np.array_equal(got, ref), k


def test_scale_out_of_range_from_python_too(bundled):
    from livecell_seg.errors import LivecellError
    from livecell_seg.inference.predict import resolve_scale

    for bad in (1e-9, 0.0, 25.0, float("nan"), True):
        with pytest.raises(LivecellError, match=r"zoom in \[0.05, 20\]"):
            resolve_scale(bundled, bad)
    assert resolve_scale(bundled, 0.05) == 0.05 and resolve_scale(bundled, "auto") == "auto"


def _frames(folder: Path, labels: Path, stamps: dict[str, int], shape=(64, 64), label_shapes=None) -> None:
    for stamp, n in stamps.items():
        name = f"A_Phase_B2_1_{stamp}_1.tif"
        folder.mkdir(parents=True, exist_ok=True)
        labels.mkdir(parents=True, exist_ok=True)
        tifffile.imwrite(folder / name, np.full(shape, 100, np.uint8))
        lab = np.zeros((label_shapes or {}).get(stamp, shape), np.uint16)
        for i in range(n):
            lab[(i // 6) * 10 : (i // 6) * 10 + 6, (i % 6) * 10 : (i % 6) * 10 + 6] = i + 1
        tifffile.imwrite(labels / name, lab)


def test_impossible_time_stamps_are_skipped_with_the_reason(tmp_path, capsys):
    """``00d99h99m`` and absurd days were read as times and bent the growth fit."""
    _frames(tmp_path / "f", tmp_path / "l", {"00d00h00m": 4, "00d12h00m": 8, "01d00h00m": 16,
                                              "00d99h99m": 30, "99999999d00h00m": 33})  # fmt: skip
    assert main(["timecourse", "-i", str(tmp_path / "f"), "--labels", str(tmp_path / "l"), "-o",
                 str(tmp_path / "o"), "-q", "--no-report"]) == 1  # fmt: skip
    err = capsys.readouterr().err
    assert "2 of 5 file name(s) have an impossible time stamp" in err
    assert "hours must be below 24" in err and "more than ten years" in err
    rows = (tmp_path / "o" / "per_image.csv").read_text().splitlines()
    assert len(rows) == 4  # header + the 3 real time points
    skipped = json.loads((tmp_path / "o" / "timecourse.json").read_text())["skipped"]
    assert {Path(s["file"]).name for s in skipped} == {
        "A_Phase_B2_1_00d99h99m_1.tif",
        "A_Phase_B2_1_99999999d00h00m_1.tif",
    }


def test_min_r2_and_the_pixel_size_are_checked_from_python_too():
    from livecell_seg.errors import LivecellError
    from livecell_seg.timecourse.analysis import fit_growth, measure_frames

    with pytest.raises(LivecellError, match="min_r2"):
        fit_growth([0, 1, 2, 3], [1, 2, 4, 8], min_r2=float("nan"))
    with pytest.raises(LivecellError, match="pixel size"):
        measure_frames([], {}, pixel_size_um=float("inf"))
    assert fit_growth([0, 1, 2, 3], [1, 2, 4, 8]).meaningful


def test_a_boolean_is_not_a_number_in_parameters(tmp_path):
    from livecell_seg.errors import InputFileError
    from livecell_seg.inference.postprocess import PostprocessParams

    for doc in ({"fg_threshold": True}, {"min_size": False}, {"keep_unseeded": 0.5}, {"smooth": [1]}):
        with pytest.raises(InputFileError):
            PostprocessParams.read(_json(tmp_path / "p.json", doc))
    assert PostprocessParams.from_dict({"keep_unseeded": 0, "min_size": "12"}) == PostprocessParams(
        keep_unseeded=False, min_size=12
    )


def test_evaluate_max_images_must_be_positive_from_python_too():
    from livecell_seg.errors import LivecellError
    from livecell_seg.evaluation.evaluate import evaluate

    with pytest.raises(LivecellError, match="max_images must be a positive integer"):
        evaluate(SAMPLE_JSON, SAMPLE_IMAGES, max_images=-2, progress=False)


def test_resume_after_changing_the_parameters_redoes_the_images(tmp_path, tiny_model, capsys):
    """``predict --resume`` after changing ``--params`` kept the old labels without a word; the
    settings are recorded in each label file and compared."""
    from livecell_seg.io import read_labels, read_labels_record

    inp = tmp_path / "in"
    for i in range(2):
        _img(inp / f"x{i}.tif", seed=i, shape=(40, 48))
    p1 = _json(tmp_path / "p1.json", {"fg_threshold": 0.3, "min_size": 0})
    p2 = _json(tmp_path / "p2.json", {"fg_threshold": 0.7, "min_size": 0})
    assert _predict(tiny_model, "-i", str(inp), "-o", str(tmp_path / "o"), "--params", str(p1)) == 0
    assert read_labels_record(tmp_path / "o" / "x0.tif")["params"]["fg_threshold"] == 0.3
    assert _predict(tiny_model, "-i", str(inp), "-o", str(tmp_path / "fresh"), "--params", str(p2)) == 0
    capsys.readouterr()
    assert (
        _predict(tiny_model, "-i", str(inp), "-o", str(tmp_path / "o"), "--params", str(p2), "--resume") == 0
    )
    err = capsys.readouterr().err
    assert (
        "2 finished image(s)" in err and "params.fg_threshold 0.3 -> 0.7" in err and "segmented again" in err
    )
    for i in range(2):
        assert np.array_equal(
            read_labels(tmp_path / "o" / f"x{i}.tif"), read_labels(tmp_path / "fresh" / f"x{i}.tif")
        )
    # the same settings again: nothing is redone
    stamp = (tmp_path / "o" / "x0.tif").stat().st_mtime_ns
    assert (
        _predict(tiny_model, "-i", str(inp), "-o", str(tmp_path / "o"), "--params", str(p2), "--resume") == 0
    )
    assert (tmp_path / "o" / "x0.tif").stat().st_mtime_ns == stamp


def test_postprocess_redoes_labels_made_with_other_parameters(tmp_path, capsys):
    from livecell_seg.io import read_labels

    (tmp_path / "maps").mkdir()
    m = np.zeros((1, 32, 32), np.float32)
    m[0, 4:12, 4:12], m[0, 20:30, 20:30] = 0.9, 0.6
    np.save(tmp_path / "maps" / "a.npy", m)
    out = tmp_path / "o"
    argv = ["postprocess", "--maps", str(tmp_path / "maps"), "--out", str(out), "--params"]
    assert main([*argv, str(_json(tmp_path / "p1.json", {"fg_threshold": 0.5, "min_size": 0}))]) == 0
    assert read_labels(out / "a.tif").max() == 2
    assert main([*argv, str(_json(tmp_path / "p2.json", {"fg_threshold": 0.7, "min_size": 0}))]) == 0
    assert read_labels(out / "a.tif").max() == 1  # redone, not kept
    err = capsys.readouterr().err
    assert "made from other maps or with other parameters (params.fg_threshold 0.5 -> 0.7)" in err


# ------------------------------------------------------------------------------------------------
# 4. lost data: two runs into one folder
# ------------------------------------------------------------------------------------------------
def test_a_second_run_into_a_locked_folder_is_refused(tmp_path, tiny_model, capsys):
    from livecell_seg.io import folder_lock

    x = _img(tmp_path / "a" / "x.tif")
    with folder_lock(tmp_path / "o", "predict"):  # another run holds the folder
        assert _predict(tiny_model, "-i", str(x), "-o", str(tmp_path / "o")) == 2
        _one_line(capsys.readouterr().err, "another predict run is writing into this folder")
        for argv in (
            ["convert", "--json", str(SAMPLE_JSON), "--out", str(tmp_path / "o")],
            ["synth", "--out", str(tmp_path / "o"), "--n-images", "1", "--size", "32x32"],
        ):
            assert main(argv) == 2
            _one_line(capsys.readouterr().err, "is writing into this folder")
    assert not list((tmp_path / "o").iterdir())
    assert _predict(tiny_model, "-i", str(x), "-o", str(tmp_path / "o")) == 0  # released


def test_two_predict_runs_at_once_lose_nothing(tmp_path, tiny_model):
    """``a/x.tif`` and ``b/x.tif`` into one folder at the same time: one result was overwritten and
    ``predict_names.json`` pointed at a missing file. Now a run either finishes with its outputs
    named right or is refused (exit 2), and ``--resume`` completes whatever was refused."""
    from livecell_seg.io import read_json

    a, b = (
        _img(tmp_path / "a" / "x.tif", seed=1, shape=(200, 240)),
        _img(tmp_path / "b" / "x.tif", seed=2, shape=(200, 240)),
    )
    out = tmp_path / "o"
    cmd = [sys.executable, "-m", "livecell_seg", "predict", "--model", str(tiny_model), "--threads", "1", "-q",
           "--overlay", "-o", str(out), "-i"]  # fmt: skip
    procs = [subprocess.Popen([*cmd, str(p)], stderr=subprocess.PIPE, text=True) for p in (a, b)]
    results = [(p.wait(timeout=HANG_S), p.stderr.read()) for p in procs]
    for rc, err in results:
        assert rc in (0, 2) and "Traceback" not in err, err
        if rc == 2:
            assert "another predict run is writing into this folder" in err
    names = read_json(out / "predict_names.json")
    assert all((out / f"{stem}.tif").is_file() for stem in names.values()), names
    assert len(set(names.values())) == len(names)  # one file per input
    assert main(["predict", "--model", str(tiny_model), "--threads", "1", "-q", "--overlay", "-o", str(out),
                 "-i", str(a), str(b), "--resume"]) == 0  # fmt: skip
    names = read_json(out / "predict_names.json")
    assert sorted(names.values()) == ["x", "x-2"] and all(
        (out / f"{s}.tif").is_file() for s in names.values()
    )


# ------------------------------------------------------------------------------------------------
# 5. wrong or misleading messages
# ------------------------------------------------------------------------------------------------
def test_odd_shapes_are_described_as_they_are(tmp_path, tiny_model, capsys):
    from livecell_seg.errors import InputFileError
    from livecell_seg.io import read_image

    assert read_image(_img(tmp_path / "one.tif", shape=(1, 1))).shape == (1, 1)
    assert read_image(_img(tmp_path / "line.tif", shape=(1, 500))).shape == (1, 500)
    two = tmp_path / "two.tif"
    tifffile.imwrite(two, np.zeros((50, 60, 2), np.uint8))
    with pytest.raises(InputFileError, match=r"holds 50 images of 2x60 pixels"):
        read_image(two)
    empty = tmp_path / "empty.tif"
    with pytest.warns(UserWarning):
        tifffile.imwrite(empty, np.zeros((0, 10), np.uint8))
    with pytest.raises(InputFileError, match="no pixels"):
        read_image(empty)
    assert _predict(tiny_model, "-i", str(tmp_path / "one.tif"), str(tmp_path / "line.tif"), "-o",
                    str(tmp_path / "o")) == 0  # fmt: skip


def test_a_fifo_and_a_link_to_dev_zero_are_named_as_such(tmp_path):
    from livecell_seg.errors import InputFileError
    from livecell_seg.io import read_image, read_json, read_labels

    os.mkfifo(tmp_path / "pipe.tif")
    os.symlink("/dev/zero", tmp_path / "zero.tif")
    os.symlink(tmp_path / "gone", tmp_path / "broken.json")
    for reader in (read_image, read_labels, read_json):
        with pytest.raises(InputFileError, match=r"is a named pipe \(FIFO\), not a regular"):
            reader(tmp_path / "pipe.tif")
        with pytest.raises(InputFileError, match=r"is a character device \(a link to /dev/zero\)"):
            reader(tmp_path / "zero.tif")
    with pytest.raises(InputFileError, match="is a broken link"):
        read_json(tmp_path / "broken.json")
    for argv in (  # were "file not found" / "no such file or folder"
        ["postprocess", "--maps", str(tmp_path / "pipe.tif"), "--out", str(tmp_path / "o")],
        ["convert", "--json", str(tmp_path / "zero.tif"), "--out", str(tmp_path / "o")],
    ):
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            assert main(argv) == 2
        _one_line(err.getvalue(), "not a regular")


def test_a_255_byte_file_name(tmp_path, tiny_model):
    from livecell_seg.io import read_json

    x = _img(tmp_path / "in" / ("x" * 251 + ".tif"))
    assert _predict(tiny_model, "-i", str(x), "-o", str(tmp_path / "o"), "--geojson", "--overlay") == 0
    stem = read_json(tmp_path / "o" / "predict_names.json")[str(x.resolve())]
    assert len(stem.encode()) <= 200 and (tmp_path / "o" / f"{stem}.geojson").is_file()


def test_timecourse_blames_a_label_image_of_the_wrong_size(tmp_path, capsys):
    _frames(tmp_path / "f", tmp_path / "l", {"00d00h00m": 4, "00d12h00m": 8, "01d00h00m": 16},
            label_shapes={"01d00h00m": (32, 64)})  # fmt: skip
    assert main(["timecourse", "-i", str(tmp_path / "f"), "--labels", str(tmp_path / "l"), "-o",
                 str(tmp_path / "o"), "-q", "--no-report"]) == 1  # fmt: skip
    err = capsys.readouterr().err
    assert f"{tmp_path / 'l' / 'A_Phase_B2_1_01d00h00m_1.tif'}: label image is 64x32 pixels, its frame" in err


def test_config_and_weights_that_disagree_name_the_layer(tmp_path, random_model_dir, capsys):
    import shutil

    d = tmp_path / "m"
    shutil.copytree(random_model_dir("fg", base_features=4, depth=2, name="w"), d)
    cfg = json.loads((d / "config.json").read_text())
    cfg["model"]["base_features"] = 8
    _json(d / "config.json", cfg)
    x = _img(tmp_path / "x.tif")
    assert main(["predict", "--model", str(d), "-i", str(x), "-o", str(tmp_path / "o"), "-q"]) == 2
    _one_line(capsys.readouterr().err, "model.pt: does not fit", "the weights have shape 4x1x3x3",
              "the config's network 8x1x3x3")  # fmt: skip


def test_jpeg_exif_orientation_is_applied(tmp_path):
    from PIL import Image, ImageOps

    from livecell_seg.io import image_header_shape, read_image

    a = np.zeros((30, 50), np.uint8)
    a[:10, :20] = 255  # a bright block at the top left, as stored
    im = Image.fromarray(a)
    exif = im.getexif()
    exif[0x0112] = 6  # the camera was turned: show it rotated 90 degrees clockwise
    im.save(tmp_path / "r.jpg", exif=exif.tobytes(), quality=100)
    with Image.open(tmp_path / "r.jpg") as ref:
        upright = np.asarray(ImageOps.exif_transpose(ref).convert("L"))
    got = read_image(tmp_path / "r.jpg")
    assert got.shape == (50, 30) == upright.shape == image_header_shape(tmp_path / "r.jpg")
    assert np.abs(got.astype(int) - upright.astype(int)).max() <= 1
    assert got[:20, -10:].mean() > 200  # the block is now at the top right
    tifffile.imwrite(tmp_path / "r.tif", a, extratags=[(274, "H", 1, 6, True)])  # TIFF Orientation
    assert np.array_equal(read_image(tmp_path / "r.tif"), np.rot90(a, -1))


def test_too_many_local_workers_for_this_machine(tmp_path, capsys):
    pytest.importorskip("distributed")
    x = _img(tmp_path / "x.tif")
    n = 4 * (os.cpu_count() or 1) + 1
    assert main(["predict", "-i", str(x), "-o", str(tmp_path / "o"), "--local-workers", str(n)]) == 2
    _one_line(capsys.readouterr().err, f"--local-workers {n}: at most")
