"""Post-processing on hand-made arrays: oracle maps of every head, params, saved maps, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from livecell_seg.cli import main
from livecell_seg.errors import InputFileError
from livecell_seg.inference.postprocess import (
    PostprocessParams,
    distance_peaks,
    finish_instances,
    instance_scores,
    instances_from_maps,
    load_maps,
    relabel_consecutive,
    remove_small,
    save_maps,
    smooth_labels,
    watershed_boundary,
    watershed_dist,
    watershed_fg,
)
from livecell_seg.model.heads import HEADS
from livecell_seg.training.targets import make_targets

ALL_HEADS = list(HEADS)


def two_touching_squares() -> np.ndarray:
    """Two 20x20 squares sharing a 10-pixel edge (the union has a waist, so fg alone can split it)."""
    lab = np.zeros((50, 60), np.int32)
    lab[5:25, 5:25] = 1
    lab[15:35, 25:45] = 2
    return lab


def disk(r: int = 15, size: int = 50) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    return (((yy - size // 2) ** 2 + (xx - size // 2) ** 2) < r**2).astype(np.int32)


def best_iou(pred: np.ndarray, gt_mask: np.ndarray) -> float:
    ids = np.unique(pred[gt_mask])
    ids = ids[ids > 0]
    if ids.size == 0:
        return 0.0
    return max(float((gt_mask & (pred == i)).sum()) / float((gt_mask | (pred == i)).sum()) for i in ids)


@pytest.mark.parametrize("head", ALL_HEADS)
def test_two_touching_squares_give_two_instances(head: str) -> None:
    gt = two_touching_squares()
    out = instances_from_maps(make_targets(gt, head), head)
    assert out.dtype == np.int32
    assert out.max() == 2
    assert set(np.unique(out)) == {0, 1, 2}
    for i in (1, 2):
        assert best_iou(out, gt == i) > 0.95
    assert (out[gt == 0] == 0).all()


def test_full_edge_touching_squares_split_by_boundary_and_dist_heads() -> None:
    # two squares sharing a whole edge form a rectangle: only heads that see the cut split it
    gt = np.zeros((30, 50), np.int32)
    gt[5:25, 5:25] = 1
    gt[5:25, 25:45] = 2
    for head in ("fg+boundary", "fg+dist"):
        out = instances_from_maps(make_targets(gt, head), head)
        assert out.max() == 2, head
        assert best_iou(out, gt == 1) > 0.95 and best_iou(out, gt == 2) > 0.95


@pytest.mark.parametrize("head", ALL_HEADS)
def test_single_disk_gives_one_instance(head: str) -> None:
    gt = disk()
    out = instances_from_maps(make_targets(gt, head), head)
    assert out.max() == 1
    assert best_iou(out, gt == 1) > 0.97


@pytest.mark.parametrize("head", ALL_HEADS)
def test_empty_maps_give_no_instances(head: str) -> None:
    maps = np.zeros((len(HEADS[head]), 32, 40), np.float32)
    out = instances_from_maps(maps, head)
    assert out.shape == (32, 40) and out.dtype == np.int32 and out.max() == 0
    assert instance_scores(out, maps[0]) == {}


def test_many_cells_consecutive_labels() -> None:
    gt = np.zeros((64, 64), np.int32)
    k = 0
    for y in range(2, 60, 12):
        for x in range(2, 60, 12):
            k += 1
            gt[y : y + 10, x : x + 10] = k
    for head in ALL_HEADS:
        out = instances_from_maps(make_targets(gt, head), head, PostprocessParams(min_size=5, min_distance=3))
        assert out.max() == k, head
        assert np.array_equal(np.unique(out), np.arange(k + 1))


def test_small_object_removal() -> None:
    gt = disk(12, 60)
    gt[2:5, 2:5] = 2  # a 9-pixel speck
    maps = make_targets(gt, "fg+boundary")
    kept = instances_from_maps(maps, "fg+boundary", PostprocessParams(min_size=5))
    assert kept.max() == 2
    removed = instances_from_maps(maps, "fg+boundary", PostprocessParams(min_size=20))
    assert removed.max() == 1
    assert removed[3, 3] == 0
    lab = np.array([[1, 1, 0, 3], [1, 1, 0, 3], [0, 0, 0, 0], [5, 0, 0, 0]])
    np.testing.assert_array_equal(
        remove_small(lab, 2), np.array([[1, 1, 0, 2], [1, 1, 0, 2], [0, 0, 0, 0], [0, 0, 0, 0]])
    )
    np.testing.assert_array_equal(relabel_consecutive(np.array([[0, 7], [3, 7]])), np.array([[0, 2], [1, 2]]))


def test_label_helpers_return_int32_in_every_branch() -> None:
    for f in (relabel_consecutive, lambda a: remove_small(a, 2), lambda a: smooth_labels(a, 1)):
        for a in (
            np.zeros((0, 3), np.int64),
            np.zeros((4, 4), np.uint16),
            np.array([[0, 9], [9, 4]], np.int64),
        ):
            out = f(a)
            assert out.dtype == np.int32 and out.shape == a.shape
    np.testing.assert_array_equal(relabel_consecutive(np.array([[0, 9], [9, 4]])), [[0, 2], [2, 1]])


@pytest.mark.parametrize("head", ALL_HEADS)
def test_thresholds_are_strict_and_bad_maps_are_named(head: str) -> None:
    maps = np.full((len(HEADS[head]), 20, 20), 0.5, np.float32)
    maps[1:] = 0.0  # seeds everywhere the foreground passes
    # foreground exactly at the threshold is background ("fg > fg_threshold")
    assert instances_from_maps(maps, head, PostprocessParams(fg_threshold=0.5)).max() == 0
    assert instances_from_maps(maps, head, PostprocessParams(fg_threshold=0.49)).max() == 1
    fns = {"fg": watershed_fg, "fg+boundary": watershed_boundary, "fg+dist": watershed_dist}
    for i, name in enumerate(HEADS[head]):
        args = [maps[j] if j != i else maps[j][None] for j in range(len(HEADS[head]))]
        with pytest.raises(ValueError, match=name.replace("fg", "fg_prob") if name == "fg" else name):
            fns[head](*args)


def test_fg_head_takes_a_2d_map_and_drops_small_seeds() -> None:
    gt = two_touching_squares()
    fg = make_targets(gt, "fg")[0]
    np.testing.assert_array_equal(instances_from_maps(fg, "fg"), instances_from_maps(fg[None], "fg"))
    assert instances_from_maps(fg, "fg").max() == 2
    # seeds smaller than min_seed_size pixels are dropped: single-pixel peaks give no instance
    # of their own, the unseeded component is kept whole
    one = watershed_fg(fg, PostprocessParams(min_seed_size=2))
    assert one.max() == 1 and (one > 0).sum() == (gt > 0).sum()


def test_distance_peaks_min_distance_one_keeps_adjacent_maxima() -> None:
    d = np.zeros((9, 12), np.float32)
    d[4, 2] = d[4, 3] = d[4, 8] = 2.0  # a 2-pixel plateau and a maximum 5 pixels away
    assert distance_peaks(d, d > 0, 1).max() == 3 and distance_peaks(d, d > 0, 0).max() == 3
    assert distance_peaks(d, d > 0, 3).max() == 2  # the plateau's pixels are closer than 3
    assert distance_peaks(d, d > 0, 1).dtype == np.int32


def test_unseeded_component_kept_only_when_asked() -> None:
    fg = np.zeros((30, 30), np.float32)
    fg[5:25, 5:25] = 1.0
    bd = np.ones_like(fg)  # boundary everywhere: no seed at all
    assert watershed_boundary(fg, bd, PostprocessParams()).max() == 1
    assert watershed_boundary(fg, bd, PostprocessParams(keep_unseeded=False)).max() == 0


def test_thresholds_matter() -> None:
    fg = np.zeros((30, 30), np.float32)
    fg[5:25, 5:25] = 0.6
    assert watershed_fg(fg, PostprocessParams(fg_threshold=0.5)).max() == 1
    assert watershed_fg(fg, PostprocessParams(fg_threshold=0.7)).max() == 0
    cd = np.full_like(fg, 0.4)
    bd = np.full_like(fg, 0.4)
    assert watershed_dist(fg, cd, bd, PostprocessParams()).max() == 1
    # no seed passes: the component survives only as an unseeded instance
    assert watershed_dist(fg, cd, bd, PostprocessParams(center_threshold=0.3, keep_unseeded=False)).max() == 0


def test_h_maxima_markers() -> None:
    gt = two_touching_squares()
    fg = make_targets(gt, "fg")[0]
    out = watershed_fg(fg, PostprocessParams(h=1.0, min_distance=0))
    assert out.max() == 2
    # a large h merges the two maxima into one marker
    assert watershed_fg(fg, PostprocessParams(h=20.0)).max() == 1


def test_distance_peaks_spacing() -> None:
    from scipy import ndimage

    d = np.zeros((20, 40), np.float32)
    d[8:11, 8:11] = 3.0  # a 3x3 plateau of equal maxima, all closer than min_distance: one marker
    m = distance_peaks(d, d > 0, 3)
    assert m.max() == 1 and m[8:11, 8:11].max() == 1
    edt = ndimage.distance_transform_edt(disk(12, 40) > 0).astype(np.float32)
    assert distance_peaks(edt, edt > 0, 5).max() == 1
    ridge = np.zeros((20, 40), np.float32)
    ridge[10, 5:35] = 2.0  # a 30-pixel ridge plateau keeps markers about min_distance apart
    ridge[9, 5:35] = ridge[11, 5:35] = 1.0
    m = distance_peaks(ridge, ridge > 0, 5)
    ys, xs = np.nonzero(m)
    assert 3 <= m.max() <= 6 and (ys == 10).all()
    assert np.diff(np.sort(xs)).min() >= 5
    assert distance_peaks(np.zeros((5, 5), np.float32), np.zeros((5, 5), bool), 3).max() == 0


def test_smoothing_removes_spurs_and_finish_matches() -> None:
    lab = np.zeros((40, 40), np.int32)
    lab[10:30, 10:30] = 1
    lab[19:21, 30:38] = 1  # a 2-pixel-wide spur
    sm = smooth_labels(lab, 2)
    assert sm[20, 35] == 0 and sm[20, 20] == 1
    assert (sm[10:30, 10:30] == 1).mean() >= 0.96  # an opening rounds the corners
    assert not (sm & (lab == 0)).any()
    fg = (lab > 0).astype(np.float32)
    bd = make_targets(lab, "fg+boundary")[1]
    p = PostprocessParams(smooth=2)
    full = watershed_boundary(fg, bd, p)
    raw = watershed_boundary(fg, bd, p, finish=False)
    np.testing.assert_array_equal(finish_instances(raw, fg, p), full)
    assert full[20, 35] == 0


def test_instance_scores_mean_probability() -> None:
    lab = np.array([[1, 1, 0], [2, 0, 4]])
    fg = np.array([[0.8, 0.6, 0.1], [0.9, 0.2, 0.5]])
    s = instance_scores(lab, fg)
    assert s.keys() == {1, 2, 4}
    assert s[1] == pytest.approx(0.7) and s[2] == pytest.approx(0.9) and s[4] == pytest.approx(0.5)


def test_bad_shapes_raise() -> None:
    with pytest.raises(ValueError):
        instances_from_maps(np.zeros((1, 8, 8)), "fg+boundary")
    with pytest.raises(ValueError):
        instances_from_maps(np.zeros((2, 8, 8)), "nope")


def test_params_json_round_trip(tmp_path) -> None:
    p = PostprocessParams(
        fg_threshold=0.35, boundary_threshold=0.25, min_distance=7, h=1.5, min_size=33, smooth=2
    )
    assert PostprocessParams.from_dict(json.loads(json.dumps(p.to_dict()))) == p
    # unknown keys (tuning record, head) are ignored; ints given as floats are coerced
    d = {**p.to_dict(), "head": "fg+boundary", "tuning": {"score": 1.0}, "min_size": 33.0}
    assert PostprocessParams.from_dict(d) == p
    assert PostprocessParams.from_dict({"params": p.to_dict()}) == p
    assert PostprocessParams.from_dict(None) == PostprocessParams()
    assert PostprocessParams.from_dict({"keep_unseeded": "false", "min_size": "12"}) == PostprocessParams(
        keep_unseeded=False, min_size=12
    )
    for text, value in (("0", False), ("no", False), ("1", True), ("Yes", True), (" TRUE ", True)):
        assert PostprocessParams.from_dict({"keep_unseeded": text}).keep_unseeded is value, text
    with pytest.raises(ValueError):
        PostprocessParams.from_dict({"fg_threshold": "high"})
    f = tmp_path / "pp.json"
    f.write_text(json.dumps(d))
    assert PostprocessParams.read(f) == p
    f.write_text("<html>not json")
    with pytest.raises(InputFileError, match="pp.json"):
        PostprocessParams.read(f)
    f.write_text("[0.5, 20]")
    with pytest.raises(InputFileError, match="pp.json: expected a JSON object"):
        PostprocessParams.read(f)


@pytest.mark.parametrize("head", ALL_HEADS)
def test_save_load_maps(tmp_path, head: str) -> None:
    maps = make_targets(two_touching_squares(), head)
    path = save_maps(tmp_path / "maps" / "img1.npy", maps, head)
    meta = json.loads((tmp_path / "maps" / "maps.json").read_text())
    assert meta["head"] == head and meta["channels"] == list(HEADS[head])
    loaded, h = load_maps(path)
    assert h == head and loaded.dtype == np.float32 and loaded.shape == maps.shape
    np.testing.assert_allclose(loaded, maps, atol=1e-3)
    # without maps.json the head follows from the channel count
    (tmp_path / "maps" / "maps.json").unlink()
    assert load_maps(path)[1] == head


def test_maps_files_tif_listing_meta_and_head_conflicts(tmp_path) -> None:
    import tifffile

    from livecell_seg.inference.postprocess import list_maps

    maps = make_targets(two_touching_squares(), "fg+boundary")
    d = tmp_path / "maps"
    save_maps(d / "a.npy", maps, "fg+boundary")
    assert json.loads((d / "maps.json").read_text()) == {
        "head": "fg+boundary",
        "channels": ["fg", "boundary"],
        "dtype": "float16",
        "layout": "CHW",
    }
    tifffile.imwrite(d / "b.TIF", maps)  # (C, H, W) float TIFF, upper-case suffix
    (d / "notes.txt").write_text("x")
    assert [q.name for q in list_maps(d)] == ["a.npy", "b.TIF"]
    loaded, head = load_maps(d / "b.TIF")
    assert head == "fg+boundary" and np.array_equal(loaded, maps)
    # maps.json decides the head: 2 channels under a fg+dist maps.json is an error naming the file
    (d / "maps.json").write_text(json.dumps({"head": "fg+dist"}))
    with pytest.raises(InputFileError, match="a.npy.*2 channels, but head 'fg\\+dist' has 3"):
        load_maps(d / "a.npy")
    with pytest.raises(InputFileError, match="notes.txt: not a folder"):
        list_maps(d / "notes.txt")


def test_load_maps_errors(tmp_path) -> None:
    with pytest.raises(InputFileError, match="missing.npy"):
        load_maps(tmp_path / "missing.npy")
    bad = tmp_path / "bad.npy"
    bad.write_bytes(b"garbage")
    with pytest.raises(InputFileError, match="bad.npy"):
        load_maps(bad)
    ints = tmp_path / "ints.npy"
    np.save(ints, np.zeros((2, 4, 4), np.uint8))
    with pytest.raises(InputFileError, match="ints.npy"):
        load_maps(ints)
    four = tmp_path / "four.npy"
    np.save(four, np.zeros((4, 4, 4), np.float32))
    with pytest.raises(InputFileError, match="four.npy: 4 channels match no head"):
        load_maps(four)
    nan = tmp_path / "nan.npy"
    np.save(nan, np.full((1, 4, 4), np.nan, np.float32))
    with pytest.raises(InputFileError, match="nan.npy: maps contain NaN"):
        load_maps(nan)
    (tmp_path / "maps.json").write_text("{broken")
    with pytest.raises(InputFileError, match="maps.json: invalid JSON"):
        load_maps(nan)


def test_postprocess_cli(tmp_path, capsys) -> None:
    import tifffile

    gt = two_touching_squares()
    mdir = tmp_path / "maps"
    save_maps(mdir / "a.npy", make_targets(gt, "fg+boundary"), "fg+boundary")
    save_maps(mdir / "b.npy", make_targets(disk(), "fg+boundary"), "fg+boundary")
    (mdir / "broken.npy").write_bytes(b"not a numpy file")
    params = tmp_path / "pp.json"
    params.write_text(json.dumps({"min_size": 5, "head": "fg+boundary"}))
    out = tmp_path / "out"
    rc = main(["postprocess", "--maps", str(mdir), "--out", str(out), "--params", str(params)])
    err = capsys.readouterr().err
    assert rc == 1 and "broken.npy" in err  # the broken file is named, the others are written
    a = tifffile.imread(out / "a.tif")
    assert a.dtype == np.uint16 and a.max() == 2
    assert tifffile.imread(out / "b.tif").max() == 1
    (mdir / "broken.npy").unlink()
    assert main(["postprocess", "--maps", str(mdir), "--out", str(out)]) == 0
    assert main(["postprocess", "--maps", str(tmp_path / "nope"), "--out", str(out)]) == 2


@pytest.mark.parametrize("radius", [1, 2])
def test_vectorized_smoothing_equals_per_object_opening(radius: int) -> None:
    from skimage.segmentation import watershed

    rng = np.random.default_rng(3)
    pts = np.zeros((80, 80), np.int32)
    for k, (y, x) in enumerate(rng.integers(5, 75, size=(25, 2)), 1):
        pts[y, x] = k
    blobs = ndi_gaussian((rng.random((80, 80)) > 0.5).astype(float), 2) > 0.45
    lab = watershed(np.zeros((80, 80)), pts, mask=blobs | (pts > 0)).astype(np.int32)
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    disk_fp = yy**2 + xx**2 <= radius**2
    ref = np.zeros_like(lab)
    for i in range(1, int(lab.max()) + 1):
        ref[ndi_opening(np.pad(lab == i, radius), disk_fp)[radius:-radius, radius:-radius]] = i
    out = smooth_labels(lab, radius)
    inner = (slice(2 * radius, -2 * radius),) * 2  # the image border does not erode in ours
    np.testing.assert_array_equal(out[inner], ref[inner])


def ndi_gaussian(a, s):
    from scipy import ndimage

    return ndimage.gaussian_filter(a, s)


def ndi_opening(m, fp):
    from scipy import ndimage

    return ndimage.binary_opening(m, fp)


# ----------------------------------------------------------------------------------------------
# quality bars on real data: oracle maps of the 5 sample images through each watershed
#
# The maps a perfect network of each head would predict (``make_targets`` of the rasterized ground
# truth) go through the post-processing and are scored with COCO mask AP (LIVECell protocol) against
# the original, overlapping annotation polygons, as in BENCHMARKS.md (post-processing). Each bar is
# the AP measured with this code (``python benchmarks/bench_postprocess.py``) minus a small margin:
# a post-processing change that loses more than ORACLE_MARGIN AP on real cells fails here.
ORACLE_MARGIN = 0.5
#: the bundled model's post-processing (src/livecell_seg/models/default/postprocess.json), fixed
#: here so that the bar does not move when the bundled model is replaced
SHIPPED = {"fg_threshold": 0.4, "center_threshold": 0.5, "boundary_dist_threshold": 0.5, "min_seed_size": 5}
#: (head, parameters, Gaussian blur sigma of the maps) -> measured mask AP (a blur of sigma 1 stands
#: for a slightly soft network; the fg rows are the ceiling of a foreground-only design)
ORACLE_BARS = {
    ("fg", "default", 0.0): 36.9,
    ("fg", "min_distance=6", 0.0): 38.9,
    ("fg+boundary", "default", 0.0): 97.3,
    ("fg+boundary", "default", 1.0): 90.8,
    ("fg+dist", "default", 0.0): 96.1,
    ("fg+dist", "shipped", 0.0): 96.8,
    ("fg+dist", "shipped", 1.0): 87.2,
}
_PARAMS = {
    "default": PostprocessParams(),
    "min_distance=6": PostprocessParams(min_distance=6),
    "shipped": PostprocessParams(**SHIPPED),
}


@pytest.fixture(scope="module")
def sample_truth():
    """The 5 real sample images: COCO dict of the original polygons, rasterized labels, oracle maps."""
    from livecell_seg.data import sample_paths
    from livecell_seg.data.coco import annotations_to_labels, load_coco

    js, _ = sample_paths()
    ds = load_coco(js)
    gts = {
        int(im["id"]): annotations_to_labels(
            ds.anns_by_image[int(im["id"])], int(im["height"]), int(im["width"])
        )
        for im in ds.images
    }
    coco = ds.to_coco_dict(sorted(gts))
    maps = {iid: {h: make_targets(gt, h) for h in HEADS} for iid, gt in gts.items()}
    return coco, gts, maps


def oracle_ap(sample_truth, head: str, params: PostprocessParams, sigma: float = 0.0) -> dict:
    from scipy import ndimage

    from livecell_seg.evaluation.metrics import coco_eval_livecell, labels_to_rles, summarize_coco_eval

    coco, gts, maps = sample_truth
    results = []
    for iid in sorted(gts):
        m = maps[iid][head]
        if sigma:
            m = np.stack([ndimage.gaussian_filter(c, sigma) for c in m])
        lab = instances_from_maps(m, head, params)
        sc = instance_scores(lab, m[0])
        ids, rles, _ = labels_to_rles(lab)
        results += [
            {"image_id": iid, "category_id": 1, "segmentation": r, "score": sc[int(k)]}
            for k, r in zip(ids.tolist(), rles)
        ]
    return summarize_coco_eval(coco_eval_livecell(coco, results, img_ids=sorted(gts)).eval)


@pytest.mark.parametrize("head, params, sigma", list(ORACLE_BARS))
def test_oracle_maps_of_the_real_sample_reach_their_measured_ap(sample_truth, head, params, sigma) -> None:
    bar = ORACLE_BARS[(head, params, sigma)]
    r = oracle_ap(sample_truth, head, _PARAMS[params], sigma)
    assert r["AP"] >= bar - ORACLE_MARGIN, (head, params, sigma, r)


@pytest.mark.slow
def test_benchmark_quick_runs() -> None:
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_postprocess.py"
    spec = importlib.util.spec_from_file_location("bench_postprocess", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    text, figs = mod.run(quick=True)
    rows = dict(figs["rows"])
    assert rows["`fg+boundary` oracle, seeded watershed, default parameters"]["AP"] >= 90.0
    assert "| ours, `fg+boundary` |" in text
