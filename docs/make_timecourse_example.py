"""Make the time-course example of docs/timecourse.md: SkBr3 well H3, field 2 of ``livecell-unlabeled``.

Runs the time course (the Python API of ``livecell-seg timecourse``) on the 17 real frames of that
series and copies its growth curves, its frame strip and its tables into ``docs/timecourse/``;
prints the doubling times quoted in docs/timecourse.md (between its ``<!-- timecourse:example -->``
markers). Re-run it after changing the bundled model::

    python docs/make_timecourse_example.py [--model DIR] [--shared DIR_HOLDING_livecell-unlabeled]

The equivalent command line is
``livecell-seg timecourse --input 'livecell-unlabeled/SkBr3_Phase_H3_2_*.tif' --out tc_skbr3``
(``livecell-unlabeled``: 48 LIVECell train/val images from public copies without annotations; not
distributed here).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "timecourse"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, help="model folder (default: the bundled model)")
    ap.add_argument(
        "--shared", type=Path, default=Path("/work/shared"), help="folder holding livecell-unlabeled/"
    )
    args = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT / "src"))
    from livecell_seg.timecourse.analysis import run_timecourse

    frames = sorted((args.shared / "livecell-unlabeled").glob("SkBr3_Phase_H3_2_*.tif"))
    if not frames:
        print(f"no SkBr3_Phase_H3_2_*.tif in {args.shared / 'livecell-unlabeled'}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="tc-example-") as tmp:
        res = run_timecourse(frames, Path(tmp) / "tc", args.model, progress=False)
        OUT.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(res.files["growth_curves"], OUT / "skbr3_h3_growth_curves.png")
        from PIL import Image

        with Image.open(res.files["frames SkBr3 H3"]) as im:  # JPEG: a quarter of the PNG's size
            im.convert("RGB").save(OUT / "skbr3_h3_frames.jpg", quality=90)
        for name in ("per_well_time", "growth"):
            shutil.copyfile(res.files[name], OUT / f"skbr3_h3_{name}.csv")
    print(f"{len(res.per_image)} frames, {len(res.per_well_time)} time points -> {OUT}")
    for g in res.growth:
        print(
            f"{g['metric']}: doubling time {g['doubling_time_h']:.1f} h "
            f"[95% CI {g['doubling_time_ci_low']:.1f}, {g['doubling_time_ci_high']:.1f}], R² {g['r2']:.2f}, "
            f"{g['n_used']} of {g['n_points']} time points ({g['t_start_h']:g}-{g['t_end_h']:g} h), "
            f"{'meaningful' if g['meaningful'] else g['reason']}"
        )
    for r in res.per_well_time:
        print(
            f"  {r['time_h']:g} h: {r['n_images']} crops, {r['count_mean']:.0f} ± {r['count_sd']:.0f} cells, "
            f"{r['confluence_mean']:.1f} ± {r['confluence_sd']:.1f} % confluence"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
