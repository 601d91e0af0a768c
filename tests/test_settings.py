"""One strict rule for settings read from dicts: unknown keys are one-line errors naming the key."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from livecell_seg.dataclass_dicts import settings_from_dict
from livecell_seg.errors import InputFileError, LivecellError
from livecell_seg.inference.postprocess import PostprocessParams
from livecell_seg.model.folder import (
    CONFIG_FILE,
    POSTPROCESS_FILE,
    ModelConfig,
    default_model_dir,
    read_model_config,
    read_postprocess,
)
from livecell_seg.training.config import load_config

ROOT = Path(__file__).resolve().parent.parent
BUNDLED_CONFIGS = sorted(
    [*(ROOT / "configs").rglob("*.yaml"), *(ROOT / "src" / "livecell_seg" / "configs").glob("*.yaml")]
)


@pytest.mark.parametrize("path", BUNDLED_CONFIGS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_bundled_training_config_loads(path: Path) -> None:
    cfg = load_config(path)
    assert cfg.model.head


def test_the_bundled_model_folder_loads_under_the_strict_rule() -> None:
    d = default_model_dir()
    config, mcfg = read_model_config(d)
    assert mcfg.head == config["model"]["head"]
    assert load_config(d / CONFIG_FILE).model == mcfg  # the folder's config.json is a TrainConfig too
    pp = read_postprocess(d)
    assert pp is not None and "tuning" in pp  # the tuning record stays allowed
    assert PostprocessParams.from_dict(pp).fg_threshold == pp["fg_threshold"]


@dataclass
class _Inner:
    size: int = 1


@dataclass
class _Settings:
    name: str = "a"
    rate: float = 0.5
    inner: _Inner = field(default_factory=_Inner)
    tags: list[str] = field(default_factory=list)


def test_settings_from_dict_is_strict_and_names_the_key() -> None:
    s = settings_from_dict(_Settings, {"name": "b", "rate": 1, "inner": {"size": 3.0}, "tags": ["x"]}, "s")
    assert s == _Settings("b", 1.0, _Inner(3), ["x"]) and isinstance(s.rate, float)
    with pytest.raises(LivecellError, match=r"^s: unknown key\(s\) raet; known: inner, name, rate, tags$"):
        settings_from_dict(_Settings, {"raet": 0.1}, "s")
    with pytest.raises(LivecellError, match=r"^s\.inner: unknown key\(s\) sise"):
        settings_from_dict(_Settings, {"inner": {"sise": 2}}, "s")
    with pytest.raises(LivecellError, match=r"^s\.inner\.size: expected an integer, got 2\.5$"):
        settings_from_dict(_Settings, {"inner": {"size": 2.5}}, "s")
    with pytest.raises(LivecellError, match=r"^s\.tags: expected a list"):
        settings_from_dict(_Settings, {"tags": "x"}, "s")
    # allowed extra keys are dropped, not passed on
    assert (
        settings_from_dict(_Settings, {"name": "c", "note": "kept elsewhere"}, "s", extra=("note",)).name
        == "c"
    )


def test_model_config_refuses_unknown_keys(tmp_path: Path) -> None:
    """ModelConfig.from_dict used to drop unknown keys silently: a typo trained/loaded the default."""
    assert ModelConfig.from_dict({"head": "fg", "depth": 3}) == ModelConfig(head="fg", depth=3)
    with pytest.raises(LivecellError, match=r"^model: unknown key\(s\) dpeth"):
        ModelConfig.from_dict({"head": "fg", "dpeth": 3})
    with pytest.raises(LivecellError, match=r"^model\.depth: expected an integer"):
        ModelConfig.from_dict({"depth": "3"})
    m = tmp_path / "m"
    shutil.copytree(default_model_dir(), m, ignore=shutil.ignore_patterns("model.pt"))
    config = json.loads((m / CONFIG_FILE).read_text())
    config["model"]["base_featurs"] = 32
    (m / CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(
        InputFileError, match=r"config\.json: invalid model config \(model: unknown key\(s\) base_featurs"
    ):
        read_model_config(m)


def test_postprocess_json_refuses_unknown_keys_but_keeps_its_records(tmp_path: Path) -> None:
    base = {"fg_threshold": 0.4, "head": "fg+dist", "tuning": {"score": 1.0}}
    assert PostprocessParams.from_dict(base).fg_threshold == 0.4
    assert PostprocessParams.from_dict({"params": {"min_size": 7}, "tuning": {}}).min_size == 7
    with pytest.raises(LivecellError, match=r"^postprocess: unknown key\(s\) fg_treshold"):
        PostprocessParams.from_dict({**base, "fg_treshold": 0.3})
    m = tmp_path / "m"
    m.mkdir()
    (m / POSTPROCESS_FILE).write_text(json.dumps({**base, "min_sise": 5}))
    with pytest.raises(InputFileError, match=r"postprocess\.json: postprocess: unknown key\(s\) min_sise"):
        read_postprocess(m)
    with pytest.raises(InputFileError, match=r"postprocess\.json: postprocess: unknown key\(s\) min_sise"):
        PostprocessParams.read(m / POSTPROCESS_FILE)


def test_a_model_folders_parameters_are_typed_in_one_place(tmp_path: Path) -> None:
    """predict, tuning, the app and napari all read LoadedModel.params / model.read_params."""
    from livecell_seg.model.folder import LoadedModel, read_params

    d = default_model_dir()
    assert read_params(d) == PostprocessParams.from_dict(read_postprocess(d))
    assert read_params(tmp_path) == PostprocessParams()  # no postprocess.json: the defaults
    m = LoadedModel(
        net=None, model_config=ModelConfig(), postprocess_file={"min_size": 7, "tuning": {}}, path=d
    )
    assert m.params == PostprocessParams(min_size=7)
    assert LoadedModel(net=None, model_config=ModelConfig()).params == PostprocessParams()
    m.postprocess_file = {"min_sise": 7}
    with pytest.raises(InputFileError, match=r"postprocess\.json: postprocess: unknown key\(s\) min_sise"):
        m.params  # noqa: B018
    m.postprocess_file = {"fg_threshold": 2.0}
    with pytest.raises(InputFileError, match=r"postprocess\.json: invalid parameter value \(fg_threshold"):
        m.params  # noqa: B018
