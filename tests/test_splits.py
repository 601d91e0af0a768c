"""Leakage-free splits: groups never cross splits, nothing is lost, duplicates go, strata hold, seeds."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from livecell_seg.cli import main
from livecell_seg.data import sample_paths
from livecell_seg.data.coco import CELL_TYPES, cell_type_of, load_coco
from livecell_seg.data.splits import (
    choose_folds,
    group_of,
    load_livecell_json,
    merge_datasets,
    split_datasets,
    write_splits,
)
from livecell_seg.errors import LivecellError

ROWS = "ABCDEFG"

#: the leakage unit, parsed here independently of the module under test: <CellType>_Phase_<Well>_...
_WELL_RE = re.compile(r"^([A-Za-z0-9]+)_Phase_([A-Za-z]+[0-9]+)_[0-9]+_[0-9]+d[0-9]+h[0-9]+m_[0-9]+\.tif$")


def well_of(file_name: str) -> str:
    """``<cell type>/<well>`` of a LIVECell file name; any other name is its own unit."""
    m = _WELL_RE.match(Path(file_name).name)
    return f"{m.group(1)}/{m.group(2)}" if m else f"file/{file_name}"


def assert_no_well_crosses(split_of_name: dict[str, str]) -> None:
    where: dict[str, set[str]] = {}
    for name, s in split_of_name.items():
        where.setdefault(well_of(name), set()).add(s)
    crossing = {w: sorted(s) for w, s in where.items() if len(s) > 1}
    assert not crossing, f"wells in several splits (leakage): {crossing}"


def _square(x: float, y: float, s: float = 6.0) -> list[list[float]]:
    return [[x, y, x + s, y, x + s, y + s, x, y + s]]


def _ann(aid: int, iid: int, k: int) -> dict:
    return {
        "id": aid,
        "image_id": iid,
        "category_id": 1,
        "segmentation": _square(2 + 8 * k, 3 + (aid % 5)),
        "area": 36.0,
        "bbox": [2 + 8 * k, 3 + (aid % 5), 6, 6],
        "iscrowd": 0,
    }


def _coco(images: list[dict], anns: list[dict], dict_form: bool = False) -> dict:
    return {
        "info": {"description": "test"},
        "licenses": [],
        "categories": [{"id": 1, "name": "cell", "supercategory": "cell"}],
        "images": images,
        "annotations": {str(a["id"]): a for a in anns} if dict_form else anns,
    }


def _image(iid: int, name: str) -> dict:
    return {"id": iid, "file_name": name, "width": 64, "height": 48}


def make_livecell_like(tmp: Path) -> tuple[list[Path], dict[str, Counter]]:
    """Two jsons (train, val) in LIVECell form: 8 cell types, 3-7 wells each (BV2: only 2 wells),
    1-4 images per well, 1-4 cells per image; plus the real defects.

    Returns the paths and, per unique file name, the multiset of contours it must end up with.
    """
    train_imgs, train_anns, val_imgs, val_anns = [], [], [], []
    expected: dict[str, Counter] = {}
    iid = aid = 0
    for t_i, ct in enumerate(CELL_TYPES):
        n_wells = 2 if ct == "BV2" else 3 + (t_i % 5)
        for w in range(n_wells):
            well = f"{ROWS[w % 7]}{w + 1 + t_i}"
            for j in range(1 + (w + t_i) % 4):
                iid += 1
                name = f"{ct}_Phase_{well}_{1 + j % 2}_0{j}d04h00m_{1 + j}.tif"
                anns = []
                for k in range(1 + (iid % 4)):
                    aid += 1
                    anns.append(_ann(aid, iid, k))
                # alternate images between the two files, like the official random train/val
                imgs, al = (val_imgs, val_anns) if iid % 5 == 0 else (train_imgs, train_anns)
                imgs.append(_image(iid, name))
                al.extend(anns)
                expected[name] = Counter(json.dumps(a["segmentation"]) for a in anns)
    # 1) cross-file overlap: a train image also in val under another id, with one extra cell there
    name = train_imgs[3]["file_name"]
    src_anns = [a for a in train_anns if a["image_id"] == train_imgs[3]["id"]]
    iid += 1
    val_imgs.append(_image(iid, name))
    extra = []
    for k, a in enumerate([*src_anns, _ann(10_000, 0, 9)]):
        aid += 1
        extra.append(
            {
                **a,
                "id": aid,
                "image_id": iid,
                "segmentation": a["segmentation"] if k < len(src_anns) else _square(50, 30),
            }
        )
    val_anns.extend(extra)
    expected[name] = Counter(json.dumps(a["segmentation"]) for a in extra)  # the bigger copy wins
    # 2) same overlap, identical annotations (copy in val only has the same cells)
    name2 = train_imgs[4]["file_name"]
    src2 = [a for a in train_anns if a["image_id"] == train_imgs[4]["id"]]
    iid += 1
    val_imgs.append(_image(iid, name2))
    for a in src2:
        aid += 1
        val_anns.append({**a, "id": aid, "image_id": iid})
    # 3) within-file duplicate: one name twice in train under two ids, the second with fewer cells
    name3 = train_imgs[10]["file_name"]
    iid += 1
    train_imgs.append(_image(iid, name3))
    aid += 1
    train_anns.append(_ann(aid, iid, 0))
    # 4) an image whose name is not a LIVECell name
    iid += 1
    train_imgs.append(_image(iid, "odd_image.png"))
    aid += 1
    train_anns.append(_ann(aid, iid, 0))
    expected["odd_image.png"] = Counter([json.dumps(train_anns[-1]["segmentation"])])
    # 5) id collisions across files: val ids renumbered to clash with train ids
    shift = {im["id"]: im["id"] - 1 for im in val_imgs}  # image id i-1 exists in train (mostly)
    for im in val_imgs:
        im["id"] = shift[im["id"]]
    for n, a in enumerate(val_anns):
        a["image_id"] = shift[a["image_id"]]
        a["id"] = n + 1  # annotation ids 1.. also exist in train
    train_p, val_p = tmp / "livecell_coco_train.json", tmp / "livecell_coco_val.json"
    train_p.write_text(json.dumps(_coco(train_imgs, train_anns)))
    val_p.write_text(json.dumps(_coco(val_imgs, val_anns, dict_form=True)))  # Kaggle dict form
    return [train_p, val_p], expected


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    return make_livecell_like(tmp_path_factory.mktemp("fake"))


def _contours(d: dict) -> dict[str, Counter]:
    by_id = {im["id"]: im["file_name"] for im in d["images"]}
    out: dict[str, Counter] = {n: Counter() for n in by_id.values()}
    for a in d["annotations"]:
        out[by_id[a["image_id"]]][json.dumps(a["segmentation"])] += 1
    return out


def test_no_group_crosses_splits_and_nothing_lost(fake, tmp_path):
    paths, expected = fake
    res = split_datasets(paths, val=0.2, test=0.2, seed=0)
    written = write_splits(res, tmp_path / "out")
    assert set(res.splits) == {"train", "val", "test"}
    seen: dict[str, str] = {}
    group_split: dict[str, str] = {}
    all_img_ids: list[int] = []
    all_ann_ids: list[int] = []
    for s in res.splits:
        d = json.loads(Path(written[s]).read_text())
        load_coco(written[s])  # a valid COCO file for our own reader
        all_img_ids += [im["id"] for im in d["images"]]
        all_ann_ids += [a["id"] for a in d["annotations"]]
        for name, contours in _contours(d).items():
            assert name not in seen, f"{name} in {seen.get(name)} and {s}"
            seen[name] = s
            assert contours == expected[name], name  # all its annotations, no pooled duplicates
            g = well_of(name)  # parsed here, not with the module's own group_of
            assert group_split.setdefault(g, s) == s, f"well {g} crosses splits"
    assert set(seen) == set(expected)  # every unique image exactly once
    assert len(all_img_ids) == len(set(all_img_ids)) and len(all_ann_ids) == len(set(all_ann_ids))
    assert sum(len(c.values()) and sum(c.values()) for c in expected.values()) == len(all_ann_ids)
    rep = json.loads(Path(written["report"]).read_text())
    assert rep["images"] == len(expected) and rep["cells"] == len(all_ann_ids)
    assert rep["remapped_image_ids"] > 0 and rep["remapped_annotation_ids"] > 0
    assert "| **all** |" in Path(written["report_md"]).read_text()


def test_duplicates_removed_and_reported(fake):
    paths, expected = fake
    merged = merge_datasets(paths)
    names = [im["file_name"] for im in merged.dataset.images]
    assert len(names) == len(set(names)) == len(expected)
    dups = {d.file_name: d for d in merged.duplicates}
    assert len(dups) == 3
    cross = [d for d in dups.values() if d.cross_file]
    within = [d for d in dups.values() if not d.cross_file]
    assert len(cross) == 2 and len(within) == 1
    bigger = next(d for d in cross if d.annotations_differ)
    assert bigger.kept.source == str(paths[1])  # the val copy has one cell more
    assert bigger.kept.n_annotations == bigger.dropped[0].n_annotations + 1
    same = next(d for d in cross if not d.annotations_differ)
    assert same.kept.source == str(paths[0])  # tie: the first file given wins
    w = within[0]
    assert w.annotations_differ and w.kept.n_annotations > w.dropped[0].n_annotations
    # the within-file duplicate's annotations are not pooled onto the kept copy
    ds, wdups = load_livecell_json(paths[0])
    kept = ds.image_by_file(w.file_name)
    assert len(ds.anns_by_image[int(kept["id"])]) == w.kept.n_annotations and len(wdups) == 1


def test_stratification_holds_for_types_with_enough_wells(fake):
    paths, _ = fake
    moves = 0
    for seed in range(6):
        res = split_datasets(paths, val=0.2, test=0.2, seed=seed)
        present = {(r.cell_type, r.split) for r in res.rows() if r.images > 0}
        for ct in CELL_TYPES:
            where = {s for t, s in present if t == ct}
            if ct == "BV2":  # only 2 wells: cannot be in 3 splits, and says so; train first
                assert len(where) == 2 and "train" in where
                assert any("BV2 has only 2 well" in w for w in res.warnings)
            else:
                assert where == {"train", "val", "test"}, (seed, ct, where)
        # the fractions are near the request (whole wells: a loose bound)
        frac = res.report()["fractions"]
        assert 0.08 < frac["val"] < 0.35 and 0.08 < frac["test"] < 0.35
        assert any("odd_image.png" in w for w in res.warnings)
        assert res.group_of[int(res.dataset.image_by_file("odd_image.png")["id"])] == "image:odd_image.png"
        moves += len(res.moved_groups)
        assert_no_well_crosses({im["file_name"]: res.split_of[int(im["id"])] for im in res.dataset.images})
    assert moves > 0  # with 3-7 wells per type and 5 folds the repair step is exercised


def test_same_seed_same_split_other_seed_can_differ(fake, tmp_path):
    paths, _ = fake
    a = split_datasets(paths, val=0.25, test=0.0, seed=3)
    b = split_datasets(paths, val=0.25, test=0.0, seed=3)
    wa, wb = write_splits(a, tmp_path / "a"), write_splits(b, tmp_path / "b")
    for s in ("train", "val"):
        assert Path(wa[s]).read_bytes() == Path(wb[s]).read_bytes()

    def by_name(r):
        return {im["file_name"]: r.split_of[int(im["id"])] for im in r.dataset.images}

    # the order of the jsons does not change the split (names are sorted before splitting)
    c = split_datasets(list(reversed(paths)), val=0.25, test=0.0, seed=3)
    assert by_name(c) == by_name(a)
    assert any(by_name(split_datasets(paths, val=0.25, seed=s)) != by_name(a) for s in range(4, 12))
    assert "test" not in wa and not (tmp_path / "a" / "test.json").exists()


def test_real_sample_split(tmp_path):
    ann, _images = sample_paths()
    res = split_datasets([ann], val=0.4, seed=0)
    written = write_splits(res, tmp_path)
    total_imgs = total_anns = 0
    groups: dict[str, set] = {}
    for s in ("train", "val"):
        d = json.loads(Path(written[s]).read_text())
        total_imgs += len(d["images"])
        total_anns += len(d["annotations"])
        for im in d["images"]:
            groups.setdefault(well_of(im["file_name"]), set()).add(s)
        assert d["images"], s
    assert total_imgs == 5 and total_anns == 1243
    assert all(len(v) == 1 for v in groups.values())
    assert any("Huh7 has only 1 well" in w for w in res.warnings)
    assert {cell_type_of(im["file_name"]) for im in res.dataset.images} == {"MCF7", "Huh7", "BT474"}


def test_group_of_is_cell_type_and_well_whatever_the_field_time_or_crop():
    names = [
        "A172_Phase_C7_1_02d16h00m_2.tif",
        "A172_Phase_C7_2_02d16h00m_2.tif",  # other field of view
        "A172_Phase_C7_1_03d04h00m_2.tif",  # other time point
        "livecell_train_val_images/A172/A172_Phase_C7_1_02d16h00m_4.tif",  # other crop, in a folder
    ]
    assert {group_of(n) for n in names} == {"A172_C7"}
    assert group_of("A172_Phase_C8_1_02d16h00m_2.tif") != group_of(names[0])  # other well
    assert group_of("BV2_Phase_C7_1_02d16h00m_2.tif") != group_of(names[0])  # other cell type, same well name
    assert group_of("odd_image.png") is None


def test_choose_folds():
    assert choose_folds(0.2, 100) == (1, 5)
    assert choose_folds(0.25, 100) == (1, 4)
    m, k = choose_folds(0.3, 100)
    assert abs(m / k - 0.3) <= 0.0125
    assert choose_folds(0.2, 3) == (1, 3)  # never more folds than groups
    with pytest.raises(LivecellError):
        choose_folds(0.2, 1)


def test_bad_arguments_and_files(fake, tmp_path, capsys):
    paths, _ = fake
    with pytest.raises(LivecellError):
        split_datasets(paths, val=0.6, test=0.5)
    with pytest.raises(LivecellError):
        split_datasets(paths, val=0.0, test=0.0)
    bad = tmp_path / "bad.json"
    bad.write_text("<html><body>403 Forbidden</body></html>")
    assert main(["split", "--json", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad.json" in err[0] and "HTML" in err[0]
    trunc = tmp_path / "trunc.json"
    trunc.write_text(paths[0].read_text()[:500])
    assert main(["split", "--json", str(trunc), "--out", str(tmp_path / "o")]) == 2
    assert "trunc.json" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_cli_split(fake, tmp_path, capsys):
    paths, expected = fake
    out = tmp_path / "splits"
    argv = ["split", "--json", str(paths[0]), "--json", str(paths[1]), "--out", str(out), "--val", "0.2"]
    assert main([*argv, "--test", "0.2", "--seed", "1"]) == 0
    captured = capsys.readouterr()
    assert "BV2" in captured.out and "wells" in captured.out
    assert "duplicate" in captured.err and "warning" in captured.err
    assert sorted(p.name for p in out.iterdir()) == [
        "split_report.json",
        "split_report.md",
        "test.json",
        "train.json",
        "val.json",
    ]
    n = sum(len(json.loads((out / f"{s}.json").read_text())["images"]) for s in ("train", "val", "test"))
    assert n == len(expected)
