"""Seconds per image of whole model folders side by side: zoom 1 and each folder's default zoom.

Each model segments the same real 704×520 LIVECell images (the 5 bundled sample images, plus the 5
dev images when ``../shared/livecell-dev`` is there) with :func:`segment_image` (what ``predict``
runs per image: network + watershed), at zoom 1 and at the folder's ``predict_scale``; the
variants run interleaved round-robin (a load spike on this shared machine slows all alike), and the
medians are reported with their ratio to the first model at zoom 1. The mean number of network
passes of the default zoom (a pass at zoom z costs z² of one at zoom 1) comes from the zooms chosen. ::

    git show HEAD~1:src/livecell_seg/models/default/model.pt > ...   # an older folder, for instance
    python benchmarks/bench_models.py --model old=/tmp/old_model --model new=src/livecell_seg/models/default \
        [--repeats 3] [--threads 2] [--write]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEV = ROOT.parent / "shared" / "livecell-dev" / "images"


def images() -> list:
    from livecell_seg.data import sample_paths
    from livecell_seg.io import list_images, read_image

    paths = list_images(sample_paths()[1])
    if DEV.is_dir():
        paths += list_images(DEV)
    return [read_image(p) for p in paths]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", default=[], metavar="NAME=DIR")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--write", action="store_true", help="rewrite the models section of BENCHMARKS.md")
    args = ap.parse_args(argv)
    import os

    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    from livecell_seg.inference.predict import segment_image
    from livecell_seg.model.folder import load_model_dir

    torch.set_num_threads(args.threads)
    specs = args.model or [f"bundled={ROOT / 'src/livecell_seg/models/default'}"]
    models = {}
    for spec in specs:
        name, _, folder = spec.partition("=")
        models[name] = load_model_dir(folder)
    imgs = images()
    variants = [(n, z) for n in models for z in ("1", "default")]
    times: dict[tuple[str, str], list[float]] = {v: [] for v in variants}
    passes: dict[str, list[float]] = {n: [] for n in models}
    for img in imgs[:1]:  # warm-up: prepared inference copies, allocator
        for m in models.values():
            segment_image(m, img, scale=1.0)
    for r in range(args.repeats):
        for img in imgs:
            for n, z in variants:
                t = time.perf_counter()
                res = segment_image(models[n], img, scale=1.0 if z == "1" else None)
                times[(n, z)].append(time.perf_counter() - t)
                if z == "default" and r == 0:
                    passes[n].append(1.0 if res.scale == 1.0 else 1.0 + res.scale**2)
    load = os.getloadavg()
    base = statistics.median(times[variants[0]])
    lines = [
        "## Whole model folders: seconds per image",
        "",
        f"Machine: {os.cpu_count()} cores (shared), torch {torch.__version__}, {args.threads} threads; "
        f"{len(imgs)} real 704×520 LIVECell images × {args.repeats} repeats, variants interleaved; "
        f"load average at the end {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}. `segment_image` = "
        "network + watershed (what `predict` runs per image, without reading and writing files).",
        "",
        "| model | network | zoom | s / image (median) | vs first model at zoom 1 | network passes / image |",
        "|---|---|---|---|---|---|",
    ]
    for n, z in variants:
        m = models[n].model_config
        med = statistics.median(times[(n, z)])
        zoom = "1" if z == "1" else f"default (`{m.predict_scale}`)"
        p = "1" if z == "1" else f"{statistics.mean(passes[n]):.2f}"
        lines.append(
            f"| {n} | {m.base_features} features, depth {m.depth} | {zoom} | {med:.3f} | {med / base:.2f}× | {p} |"
        )
    lines += ["", f"Command: `python benchmarks/bench_models.py {' '.join('--model ' + s for s in specs)}`"]
    text = "\n".join(lines)
    print(text)
    if args.write:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from _sections import replace_section

        replace_section("models", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
