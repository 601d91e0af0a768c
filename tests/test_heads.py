"""The heads registry is the one place a head is described: everything else reads it."""

from __future__ import annotations

import argparse
from dataclasses import fields, replace

import numpy as np
import pytest

from livecell_seg import interactive as logic
from livecell_seg.commands import postprocess as postprocess_cmd
from livecell_seg.inference import postprocess, tuning
from livecell_seg.inference.postprocess import PostprocessParams
from livecell_seg.model import heads
from livecell_seg.training import targets


def test_registry_is_complete_and_consistent():
    pp_fields = [f.name for f in fields(PostprocessParams)]
    assert [s.name for s in heads.PARAM_SPECS] == pp_fields  # one spec per field, same order
    assert set(heads.COMMON_PARAMS) <= set(pp_fields)
    for name, entry in heads.REGISTRY.items():
        assert entry.name == name and heads.HEADS[name] == entry.channels
        assert all(ch in heads.CHANNELS for ch in entry.channels)
        assert callable(postprocess.WATERSHEDS[name])
        assert set(entry.params) <= set(pp_fields)
        assert set(entry.grids) == set(heads.GRID_SIZES)
        for grid in entry.grids.values():
            assert set(grid) <= set(entry.param_names), (name, set(grid) - set(entry.param_names))
    assert set(postprocess.WATERSHEDS) == set(heads.REGISTRY)  # one watershed per head, no stray ones
    for ch in heads.CHANNELS.values():
        assert callable(getattr(targets, ch.target))
    assert PostprocessParams.PROBABILITY_FIELDS == (
        "fg_threshold",
        "boundary_threshold",
        "center_threshold",
        "boundary_dist_threshold",
    )


def test_cli_head_choices_come_from_the_registry():
    parser = argparse.ArgumentParser()
    postprocess_cmd.add_arguments(parser)
    action = next(a for a in parser._actions if a.dest == "head")
    assert tuple(action.choices) == tuple(heads.REGISTRY)


@pytest.fixture
def extra_head(monkeypatch):
    """A new head added by one registry entry and its watershed (a fg-only chain under another name)."""
    entry = replace(
        heads.REGISTRY["fg"],
        name="fg2",
        params=("min_distance",),
        grids={"small": {"fg_threshold": [0.4, 0.6]}, "full": {"fg_threshold": [0.3, 0.5, 0.7]}},
    )
    monkeypatch.setitem(heads.REGISTRY, "fg2", entry)
    monkeypatch.setitem(heads.HEADS, "fg2", entry.channels)
    monkeypatch.setitem(postprocess.WATERSHEDS, "fg2", postprocess.watershed_fg)
    return entry


def test_a_new_registry_entry_reaches_every_user(extra_head):
    """Adding one entry (and its watershed) is enough: post-processing, targets, tuning grids,
    app/napari parameters."""
    lab = np.zeros((40, 40), np.int32)
    lab[5:18, 5:18] = 1
    lab[22:36, 20:35] = 2
    maps = targets.make_targets(lab, "fg2")
    assert maps.shape == (1, 40, 40)
    out = postprocess.instances_from_maps(maps, "fg2", PostprocessParams(min_size=5))
    ref = postprocess.instances_from_maps(maps, "fg", PostprocessParams(min_size=5))
    assert int(out.max()) == 2 and np.array_equal(out, ref)
    assert tuning.default_grid("fg2", "full") == {"fg_threshold": [0.3, 0.5, 0.7]}
    names = [s.name for s in logic.param_specs("fg2")]
    assert "min_distance" in names and "h" not in names and "boundary_threshold" not in names
    assert postprocess.infer_head(1) == "fg"  # the first head with that channel count
    parser = argparse.ArgumentParser()
    postprocess_cmd.add_arguments(parser)
    assert "fg2" in next(a for a in parser._actions if a.dest == "head").choices


def test_unknown_head_is_refused_everywhere():
    with pytest.raises(ValueError, match="unknown head"):
        postprocess.instances_from_maps(np.zeros((1, 4, 4)), "flows")
    with pytest.raises(ValueError, match="unknown head"):
        tuning.default_grid("flows")
    with pytest.raises(ValueError, match="unknown head"):
        logic.param_specs("flows")
    with pytest.raises(ValueError, match="unknown head"):
        targets.make_targets(np.zeros((4, 4), np.int32), "flows")
