"""Fault injection: ``predict`` killed with SIGTERM and with SIGKILL at a random point, then resumed.

After ``--resume`` every output (labels, maps, overlays, measurements, ROI zips, the names file) is
present and byte-identical to an uninterrupted run, and no temporary file is left. SIGTERM (what
``kill`` and cluster schedulers send) is handled like Ctrl+C: one line, exit 143, temporary files
removed at once; after SIGKILL the next run sweeps them. A tiny model on small images keeps it fast.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import HANG_S

torch = pytest.importorskip("torch")

from livecell_seg.cli import main  # noqa: E402

N_IMAGES = 10
EXTRAS = ["--save-maps", "--overlay", "--csv", "--rois"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> tuple[Path, Path, Path]:
    """(model folder, input folder, output of an uninterrupted run)."""
    import tifffile

    from livecell_seg.model.folder import ModelConfig, build_model, model_to_dict, save_model_dir

    root = tmp_path_factory.mktemp("faults")
    torch.manual_seed(0)
    cfg = ModelConfig(head="fg+dist", base_features=4, depth=2)
    model = save_model_dir(root / "model", build_model(cfg).eval(), {"model": model_to_dict(cfg)})
    inp = root / "in"
    inp.mkdir()
    rng = np.random.default_rng(0)
    for i in range(N_IMAGES):
        img = rng.normal(100, 10, (96, 128))
        yy, xx = np.mgrid[:96, :128]
        for _ in range(12):
            cy, cx, r = rng.integers(0, 96), rng.integers(0, 128), rng.integers(4, 10)
            img[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] += 60
        tifffile.imwrite(inp / f"img{i:02d}.tif", np.clip(img, 0, 255).astype(np.uint8))
    old = torch.get_num_threads()
    try:
        assert main(["predict", "--model", str(model), "-i", str(inp), "-o", str(root / "ref"), "--threads", "1", "-q", *EXTRAS]) == 0  # fmt: skip
    finally:
        torch.set_num_threads(old)
    return model, inp, root / "ref"


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _start(model: Path, inp: Path, out: Path, resume: bool) -> subprocess.Popen:
    argv = [sys.executable, "-m", "livecell_seg", "predict", "--model", str(model), "-i", str(inp), "-o", str(out),
            "--threads", "1", "-q", *EXTRAS] + (["--resume"] if resume else [])  # fmt: skip
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _kill_at_random_point(proc: subprocess.Popen, out: Path, sig: int, rng: random.Random) -> tuple[int, str]:
    """Wait until ``k`` label images exist (k random), wait a random few ms more, send ``sig``."""
    k = rng.randint(1, N_IMAGES - 2)
    deadline = time.monotonic() + HANG_S
    while time.monotonic() < deadline and proc.poll() is None:
        if len(list(out.glob("img*.tif"))) >= k:
            break
        time.sleep(0.002)
    time.sleep(rng.uniform(0, 0.05))
    if proc.poll() is None:
        proc.send_signal(sig)
    _stdout, err = proc.communicate(timeout=HANG_S)
    return proc.returncode, err


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_predict_killed_then_resumed_gives_identical_outputs(setup, tmp_path, sig):
    model, inp, ref = setup
    seed = int(os.environ.get("LIVECELL_FAULT_SEED", time.time_ns() % 10**6))
    rng = random.Random(seed)
    out = tmp_path / "out"
    rc, err = _kill_at_random_point(_start(model, inp, out, resume=False), out, sig, rng)
    done = len(list(out.glob("img*.tif")))
    note = f"seed {seed}: killed with {sig.name} after {done} of {N_IMAGES} images"
    if rc == 0:  # finished before the signal arrived: nothing to resume (rare)
        assert _files(out) == _files(ref), note
        return
    if sig == signal.SIGTERM:
        assert rc == 128 + signal.SIGTERM, (note, rc, err)
        assert err.strip().splitlines()[-1] == "livecell-seg predict: terminated (SIGTERM)", (note, err)
        assert not list(out.rglob("*.part")), note  # cleaned up at once
    else:
        assert rc == -signal.SIGKILL, (note, rc, err)
    # whatever is there under a final name is complete: identical to the reference
    partial = _files(out)
    assert all(partial[k] == v for k, v in _files(ref).items() if k in partial and k != "maps/maps.json"), (
        note
    )
    resumed = _start(model, inp, out, resume=True)
    _stdout, err = resumed.communicate(timeout=HANG_S)
    assert resumed.returncode == 0, (note, err)
    assert not list(out.rglob("*.part")), note  # SIGKILL's leftovers swept
    got, want = _files(out), _files(ref)
    assert sorted(got) == sorted(want), note
    # summary.csv describes the last run: images kept from before are "resumed", the rest as made
    assert [k for k in want if k != "summary.csv" and got[k] != want[k]] == [], note
    assert _summary(got["summary.csv"], "status") == _summary(want["summary.csv"], "status"), note
    assert {r["status"] for r in _rows(got["summary.csv"])} <= {"segmented", "resumed"}, note


def _rows(data: bytes) -> list[dict[str, str]]:
    import csv
    import io

    return list(csv.DictReader(io.StringIO(data.decode())))


def _summary(data: bytes, without: str) -> list[dict[str, str]]:
    return [{k: v for k, v in r.items() if k != without} for r in _rows(data)]
