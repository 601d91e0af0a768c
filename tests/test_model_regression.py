"""Regression test of the bundled model folder: the current code must reproduce its recorded score.

``src/livecell_seg/models/default/provenance.json`` holds the score of the bundled model on the
5 sample images, recorded by ``python benchmarks/model_provenance.py --write`` (predict + evaluate,
exactly what a user runs). The test re-scores the folder with the code as it is now: a change in
normalization, inference, post-processing or evaluation that loses accuracy fails here. The record
lives in the model folder, so replacing the model means re-recording its score with that command.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from livecell_seg.model.folder import default_model_dir  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
#: how far the re-scored figures may move from the record (float rounding across CPUs moves a few
#: pixels); a larger drop is a regression, a larger gain means the record is stale
TOLERANCE = {"mask_ap": 0.3, "ap50": 0.3, "msa": 0.003}


def _provenance_module():
    spec = importlib.util.spec_from_file_location(
        "model_provenance", REPO / "benchmarks" / "model_provenance.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def bundled() -> Path:
    d = default_model_dir()
    if not (d / "model.pt").is_file():
        pytest.skip("the bundled model is not installed")
    return d


def test_bundled_model_reproduces_its_recorded_score_on_the_sample(bundled):
    prov_mod = _provenance_module()
    prov = prov_mod.provenance_of(bundled)
    fix = f"re-record it with `{prov_mod.COMMAND}` if the model was replaced on purpose"
    assert prov.get("scores", {}).get(prov_mod.SCORE_KEY), f"{bundled}/provenance.json has no score; {fix}"
    rec = prov["scores"][prov_mod.SCORE_KEY]
    assert prov["model_sha256"] == prov_mod.sha256_of(bundled / "model.pt"), (
        f"provenance.json was recorded for another model.pt; {fix}"
    )
    assert prov["postprocess_sha256"] == prov_mod.sha256_of(bundled / "postprocess.json"), (
        f"provenance.json was recorded with another postprocess.json; {fix}"
    )
    old = torch.get_num_threads()
    torch.set_num_threads(1)  # the figures do not depend on it; a shared CPU is faster with one
    try:
        now = prov_mod.score_sample(bundled)
    finally:
        torch.set_num_threads(old)
    assert now["n_true"] == rec["n_true"]
    assert abs(now["n_pred"] - rec["n_pred"]) <= max(3, 0.005 * rec["n_pred"]), (now["n_pred"], rec["n_pred"])
    for key, tol in TOLERANCE.items():
        assert now[key] >= rec[key] - tol, f"{key} dropped: {now[key]} now, {rec[key]} recorded"
        assert now[key] <= rec[key] + tol, (
            f"{key} rose to {now[key]} from {rec[key]}: the record is stale; {fix}"
        )
