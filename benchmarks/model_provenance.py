"""Record a model folder's score on the 5 bundled sample images in its ``provenance.json``.

The bundled model's regression test (``tests/test_model_regression.py``) re-scores the model folder
with the current code and compares with what this script recorded, so a change anywhere in the
predict → post-process → evaluate path that costs accuracy fails the suite. Run it whenever the
model folder (``model.pt`` or ``postprocess.json``) is replaced on purpose:

    python benchmarks/model_provenance.py --write                 # the bundled model
    python benchmarks/model_provenance.py --model runs/x/model    # print only

What is scored is exactly what a user runs (``livecell-seg predict --save-maps`` without TTA, then
``livecell-seg evaluate --only-predicted``; LIVECell protocol, instances ranked by their mean
foreground probability). The bundled model was trained on these 5 images, so the figures are
training-set figures: a regression check, not an accuracy claim.

``provenance.json`` keeps any other keys it already has; this script writes
``model_sha256``, ``postprocess_sha256`` and ``scores["sample_5_images"]``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

PROVENANCE_FILE = "provenance.json"
SCORE_KEY = "sample_5_images"
COMMAND = "python benchmarks/model_provenance.py --write"


def sha256_of(path: Path) -> str | None:
    """Hex SHA-256 of a file's bytes (None when it does not exist)."""
    if not path.is_file():
        return None
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def score_sample(model_dir: Path) -> dict[str, Any]:
    """predict + evaluate ``model_dir`` on the 5 sample images (no TTA, the folder's postprocess.json)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from accuracy_sample import score
    from livecell_seg.model.folder import read_params

    with tempfile.TemporaryDirectory() as tmp:
        m = score(Path(model_dir), None, tta=False, work=Path(tmp))
    return {
        "mask_ap": m["AP"],
        "ap50": m["AP50"],
        "msa": m["mSA"],
        "n_pred": m["n_pred"],
        "n_true": m["n_true"],
        "postprocess": read_params(model_dir).to_dict(),
        "protocol": "livecell-seg predict --save-maps (no TTA) + livecell-seg evaluate --only-predicted on "
        "the 5 bundled LIVECell sample images; COCO mask AP (LIVECell protocol) and AP50 in percent, "
        "mSA as a fraction; seen in training for the bundled model",
        "command": COMMAND,
    }


def provenance_of(model_dir: Path) -> dict[str, Any]:
    """The folder's ``provenance.json`` ({} when there is none)."""
    p = Path(model_dir) / PROVENANCE_FILE
    return json.loads(p.read_text()) if p.is_file() else {}


def record(model_dir: Path, scores: dict[str, Any]) -> Path:
    """Write ``scores`` and the hashes of model.pt / postprocess.json into the folder's provenance.json."""
    import platform

    import torch

    from livecell_seg.io import write_json_atomic

    model_dir = Path(model_dir)
    d = provenance_of(model_dir)
    d["model_sha256"] = sha256_of(model_dir / "model.pt")
    d["postprocess_sha256"] = sha256_of(model_dir / "postprocess.json")
    d.setdefault("scores", {})[SCORE_KEY] = {
        **scores,
        "recorded_with": {"python": platform.python_version(), "torch": torch.__version__},
    }
    path = model_dir / PROVENANCE_FILE
    write_json_atomic(path, d)
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="model folder (default: the bundled model)")
    ap.add_argument("--write", action="store_true", help=f"record the scores in MODEL/{PROVENANCE_FILE}")
    args = ap.parse_args(argv)
    from livecell_seg.model.folder import default_model_dir

    model_dir = Path(args.model) if args.model else default_model_dir()
    scores = score_sample(model_dir)
    print(json.dumps({k: scores[k] for k in ("mask_ap", "ap50", "msa", "n_pred", "n_true")}))
    if args.write:
        print(f"wrote {record(model_dir, scores)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
