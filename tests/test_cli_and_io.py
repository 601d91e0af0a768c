"""CLI, I/O and target basics."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from livecell_seg.cli import COMMANDS
from livecell_seg.errors import InputFileError
from livecell_seg.io import normalize_image, read_image, write_labels
from livecell_seg.model.heads import HEADS
from livecell_seg.training.targets import make_targets

PRODUCT_COMMANDS = (
    "download convert split eda train predict timecourse finetune tune evaluate demo app".split()
)


def test_help_is_light_and_lists_every_subcommand():
    """``--help`` is instant because it imports nothing heavy; checked by what it imports, not by a
    stopwatch (a timed assertion fails on a busy machine; issue 22)."""
    out = subprocess.run([sys.executable, "-m", "livecell_seg", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for name in PRODUCT_COMMANDS:
        assert name in COMMANDS and f"    {name}" in out.stdout
    # nothing heavy imported by the parser, by --help, nor by a subcommand's --help
    heavy = ("torch", "streamlit", "napari", "qtpy", "matplotlib", "lightning", "dask", "scipy", "skimage")
    probe = (
        "import sys, contextlib, io, livecell_seg.cli as c\n"
        "c.build_parser()\n"
        "for argv in (['--help'], ['predict', '--help'], ['timecourse', '--help'], ['train', '--help'], ['finetune', '--help']):\n"
        "    with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
        "        c.main(argv)\n"
        f"print(*(m in sys.modules for m in {heavy!r}))"
    )
    got = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert got.stdout.split() == ["False"] * len(heavy), (heavy, got.stdout, got.stderr[-2000:])


def test_read_image_rgb_16bit_and_errors(tmp_path):
    import tifffile
    from PIL import Image

    rgb = np.zeros((20, 30, 3), np.uint8)
    rgb[..., 1] = 200
    Image.fromarray(rgb).save(tmp_path / "a.png")
    g = read_image(tmp_path / "a.png")
    assert g.shape == (20, 30) and g.dtype == np.uint8 and abs(int(g[0, 0]) - round(200 * 0.587)) <= 1
    tifffile.imwrite(tmp_path / "b.tif", np.full((5, 7), 40000, np.uint16), compression="lzw")
    assert read_image(tmp_path / "b.tif").dtype == np.uint16
    (tmp_path / "bad.tif").write_bytes(b"<html>not found</html>")
    with pytest.raises(InputFileError, match="bad.tif"):
        read_image(tmp_path / "bad.tif")
    with pytest.raises(InputFileError, match="missing.png"):
        read_image(tmp_path / "missing.png")


def test_normalize_is_bit_depth_independent():
    rng = np.random.default_rng(0)
    img8 = rng.integers(0, 256, (64, 64)).astype(np.uint8)
    a = normalize_image(img8)
    b = normalize_image(img8.astype(np.uint16) * 257)
    assert np.allclose(a, b, atol=1e-5)


def test_write_labels_atomic_roundtrip(tmp_path):
    import tifffile

    lab = np.arange(12, dtype=np.int64).reshape(3, 4)
    write_labels(tmp_path / "x.tif", lab)
    back = tifffile.imread(tmp_path / "x.tif")
    assert back.dtype == np.uint16 and np.array_equal(back, lab)
    assert [p.name for p in tmp_path.iterdir()] == ["x.tif"]


def test_targets_two_touching_squares():
    lab = np.zeros((30, 40), np.int32)
    lab[5:15, 5:15] = 1
    lab[5:15, 15:25] = 2
    for head, chans in HEADS.items():
        t = make_targets(lab, head)
        assert t.shape == (len(chans), 30, 40)
        assert np.array_equal(t[0], lab > 0)
    b = make_targets(lab, "fg+boundary")[1]
    assert b[10, 14] == 1 and b[10, 15] == 1 and b[10, 10] == 0  # touching cells separated
    cd, bd = make_targets(lab, "fg+dist")[1:]
    assert cd[lab > 0].min() == 0 and bd[lab > 0].min() == 0
    assert bd[5, 10] == 1.0 and bd[10, 14] == 1.0  # on the boundary
    assert ((cd >= 0) & (cd <= 1)).all() and ((bd >= 0) & (bd <= 1)).all()
