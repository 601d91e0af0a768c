"""Prediction speed on the real LIVECell sample (704 x 520 images), CPU, side by side in one run.

Every timed variant runs interleaved round-robin in one loop (the machine is shared: a load spike
then slows all variants alike); medians over repeats:

1. a matrix-multiply reference (large float32 ``torch.matmul``, best run) -> GFLOP/s;
2. a stock MONAI ``BasicUNet`` (2-D, default features (32, 32, 64, 128, 256, 32)) forward pass on
   the same image: the baseline of the target "full per-image cost <= 1.5x the stock forward";
3. our network (the bundled model, or ``ModelConfig()`` defaults with random weights when none is
   bundled yet) through :func:`predict_maps`: ms, FLOPs (``FlopCounterMode``) and achieved GFLOP/s,
   plus speed levers: channels_last, 1 thread vs all, tiles vs whole image, ``torch.compile``,
   bf16 autocast, 8x TTA;
4. end to end through :func:`predict_paths` (read -> network -> watershed -> write uint16 TIFF),
   with its split; and the watershed on *realistic* maps (the ground truth's own targets), since a
   random network's maps are not.

Usage: ``python benchmarks/bench_predict.py [--quick] [--write] [--no-compile]``
(``--write`` rewrites the ``predict`` section of BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

# what the predict CLI does (see livecell_seg/inference/tiling.py); must happen before torch is imported
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

ROOT = Path(__file__).resolve().parent.parent
SECTION = "predict"

_CHILD = """
import statistics, sys, time
import numpy as np, torch
from livecell_seg.data import sample_paths
from livecell_seg.io import list_images, read_image
from livecell_seg.inference.tiling import predict_maps
sys.path.insert(0, {bench_dir!r})
from bench_predict import load_model
torch.set_num_threads({threads})
model, _ = load_model()
img = read_image(list_images(sample_paths()[1])[0])[: {h}, : {w}]
predict_maps(model, img)
ts = []
for _ in range({n}):
    t = time.perf_counter(); predict_maps(model, img); ts.append(time.perf_counter() - t)
print(statistics.median(ts))
"""


def wait_policy_compare(h: int, w: int, threads: int, rounds: int, n: int) -> dict[str, float]:
    """Median seconds of the network in fresh processes with OpenMP's default wait policy vs
    ``OMP_WAIT_POLICY=PASSIVE`` (it is read once at start-up), alternating the two."""
    import subprocess

    code = _CHILD.format(bench_dir=str(Path(__file__).parent), threads=threads, h=h, w=w, n=n)
    res: dict[str, list[float]] = {"libgomp default (spin, then sleep)": [], "OMP_WAIT_POLICY=PASSIVE": []}
    for _ in range(rounds):
        for name in res:
            env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
            if "PASSIVE" in name:
                env["OMP_WAIT_POLICY"] = "PASSIVE"
            out = subprocess.run(
                [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
            )
            res[name].append(float(out.stdout.strip().splitlines()[-1]))
    return {k: statistics.median(v) for k, v in res.items()}


def median_time(fn: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    """Median wall time (s) of ``fn()`` over ``repeats`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def interleaved(variants: dict[str, Callable[[], object]], repeats: int) -> dict[str, list[float]]:
    """Wall times (s) of each variant, run round-robin (one warm-up each) so that a busy, shared
    machine slows all variants alike instead of whichever happened to run during a spike."""
    for fn in variants.values():
        fn()
    ts: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(repeats):
        for k, fn in variants.items():
            t = time.perf_counter()
            fn()
            ts[k].append(time.perf_counter() - t)
    return ts


def _has_cpu_bf16() -> bool:
    try:
        return (
            "avx512_bf16" in Path("/proc/cpuinfo").read_text()
            or "amx_bf16" in Path("/proc/cpuinfo").read_text()
        )
    except OSError:
        return False


def count_flops(net, x) -> int:  # noqa: ANN001
    """FLOPs of one forward pass (convolutions and matmuls, as counted by FlopCounterMode)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.inference_mode(), FlopCounterMode(display=False) as fc:
        net(x)
    return int(fc.get_total_flops())


def load_model():  # noqa: ANN201
    """(LoadedModel, description): the bundled model, else ModelConfig() defaults (random weights)."""
    from livecell_seg.model.folder import (
        LoadedModel,
        ModelConfig,
        build_model,
        default_model_dir,
        load_model_dir,
    )

    d = default_model_dir()
    if (d / "model.pt").is_file() and (d / "config.json").is_file():
        m = load_model_dir(d)
        c = m.model_config
        return (
            m,
            f"bundled model (`{c.arch}`, base_features {c.base_features}, depth {c.depth}, head `{c.head}`)",
        )
    cfg = ModelConfig()
    net = build_model(cfg).eval()
    desc = (
        f"**no bundled model yet**: `ModelConfig()` defaults with random weights (`{cfg.arch}`, "
        f"base_features {cfg.base_features}, depth {cfg.depth}, head `{cfg.head}`)"
    )
    return LoadedModel(net=net, model_config=cfg), desc


def run(quick: bool, compile_: bool) -> str:
    import torch
    from monai.networks.nets import BasicUNet

    from livecell_seg.data import sample_paths
    from livecell_seg.data.coco import annotations_to_labels, find_image, load_coco
    from livecell_seg.inference.postprocess import PostprocessParams, instance_scores, instances_from_maps
    from livecell_seg.inference.runner import predict_paths
    from livecell_seg.inference.tiling import predict_maps
    from livecell_seg.io import normalize_image, read_image, write_labels
    from livecell_seg.training.targets import make_targets

    load0 = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    cores = os.cpu_count() or 1
    torch.set_num_threads(cores)
    repeats = 3 if quick else 7
    js, img_dir = sample_paths()
    ds = load_coco(js)
    images = ds.images[: 2 if quick else len(ds.images)]
    paths = [find_image(img_dir, im["file_name"]) for im in images]
    raw = [read_image(p) for p in paths]
    if quick:  # a 256 x 352 crop keeps --quick under a minute on a busy 2-core machine
        raw = [r[:256, :352] for r in raw]
    h, w = raw[0].shape
    img = raw[0]

    model, model_desc = load_model()
    net = model.net
    head = model.head
    out_ch = model.model_config.out_channels

    # all timed variants run interleaved, round-robin, in one loop ------------------------------
    n = 1024 if quick else 2048
    ma, mb = torch.randn(n, n), torch.randn(n, n)
    torch.manual_seed(0)
    stock = BasicUNet(spatial_dims=2, in_channels=1, out_channels=out_ch).eval()
    x_raw = torch.from_numpy(normalize_image(img))[None, None]
    flops_stock = count_flops(stock, x_raw)
    stride = model.stride
    hp, wp = -(-h // stride) * stride, -(-w // stride) * stride
    flops_ours = count_flops(net, torch.zeros(1, 1, hp, wp))

    def stock_forward() -> None:
        with torch.inference_mode():
            stock(torch.from_numpy(normalize_image(img))[None, None])

    def one_thread() -> None:
        torch.set_num_threads(1)
        try:
            predict_maps(model, img)
        finally:
            torch.set_num_threads(cores)

    tmp_in = tempfile.TemporaryDirectory()
    if quick:  # write the crops as LZW TIFFs so that reading is part of the pipeline too
        import tifffile

        paths = []
        for i, r in enumerate(raw):
            paths.append(Path(tmp_in.name) / f"crop{i}.tif")
            tifffile.imwrite(paths[-1], r, compression="lzw")
    e2e: list[dict[str, float]] = []
    zooms: list[float] = []
    default_zoom = model.model_config.predict_scale
    outs: list[tempfile.TemporaryDirectory] = []

    def pipeline_at(scale: float | None, sink: Callable[[object], object]) -> Callable[[], None]:
        """One image per call through predict_paths at ``scale`` (None: the model folder's
        default zoom), cycling through the images: read -> network -> watershed -> write."""
        counter = iter(range(10**9))
        out = tempfile.TemporaryDirectory()
        outs.append(out)

        def run_one() -> None:
            path = paths[next(counter) % len(paths)]
            sink(predict_paths([path], out.name, model=model, scale=scale, progress=False, num_threads=cores))

        return run_one

    pipeline = pipeline_at(1.0, lambda s: e2e.extend(s.timings))
    pipeline_default = pipeline_at(None, lambda s: zooms.extend(s.scales.values()))

    variants: dict[str, Callable[[], object]] = {
        "matmul": lambda: torch.matmul(ma, mb),
        "stock": stock_forward,
        "default": lambda: predict_maps(model, img),
        "pipeline": pipeline,
        "pipeline_default": pipeline_default,
        "network as built (no BatchNorm folding, contiguous)": lambda: predict_maps(
            model, img, optimize=False, channels_last=False
        ),
        "BatchNorm folded, contiguous": lambda: predict_maps(model, img, channels_last=False),
        "512² tiles, overlap 0.25 instead of whole image": lambda: predict_maps(
            model, img, whole=False, tile=min(512, max(16, min(h, w) // 2 // 16 * 16 + 16))
        ),
        "1 thread instead of all cores": one_thread,
        "bf16 autocast (`precision='bf16'`)": lambda: predict_maps(model, img, precision="bf16"),
    }
    if not quick:
        variants["8× TTA"] = lambda: predict_maps(model, img, tta=True)
    raw_t = interleaved(variants, repeats)
    e2e = e2e[1:]  # drop the warm-up
    tmp_in.cleanup()
    for out in outs:
        out.cleanup()
    t = {k: statistics.median(v) for k, v in raw_t.items()}
    peak, peak_median = 2 * n**3 / min(raw_t["matmul"]) / 1e9, 2 * n**3 / t.pop("matmul") / 1e9
    t_stock, t_net, t_e2e = t.pop("stock"), t.pop("default"), t.pop("pipeline")
    t_e2e_default = t.pop("pipeline_default")
    split = {k: statistics.median(x[k] for x in e2e) for k in e2e[0]}
    bf16_dev = float(np.abs(predict_maps(model, img, precision="bf16") - predict_maps(model, img)).max())
    rows: list[tuple[str, float, str]] = [(k, v, "") for k, v in t.items()]
    compile_note = ""
    if compile_ and not quick:
        try:
            t0 = time.perf_counter()
            cnet = torch.compile(net)
            with torch.inference_mode():
                cnet(torch.zeros(1, 1, hp, wp))
            compile_s = time.perf_counter() - t0
            cmodel = type(model)(net=cnet, model_config=model.model_config)
            tc = interleaved(
                {
                    "default": lambda: predict_maps(model, img),
                    "compiled": lambda: predict_maps(cmodel, img, optimize=False, channels_last=False),
                },
                repeats,
            )
            rows.append(
                (
                    "torch.compile (inductor), after compiling; vs default in a separate interleaved run",
                    statistics.median(tc["compiled"]) * t_net / statistics.median(tc["default"]),
                    f"(compiling took {compile_s:.0f} s)",
                )
            )
        except Exception as e:  # noqa: BLE001
            compile_note = f"torch.compile failed: {type(e).__name__}: {str(e).splitlines()[0][:120]}"

    wp_rounds, wp_n = (1, 2) if quick else (3, 3)
    policy = wait_policy_compare(h, w, cores, wp_rounds, wp_n)

    # watershed on realistic maps (targets of the ground truth) + write
    p = PostprocessParams()
    gt = [
        annotations_to_labels(ds.anns_by_image[int(im["id"])], int(im["height"]), int(im["width"]))
        for im in images
    ]
    if quick:
        gt = [g[:256, :352] for g in gt]
    oracle = [make_targets(g, head) for g in gt]

    def pp(m: np.ndarray) -> None:
        lab = instances_from_maps(m, head, p)
        instance_scores(lab, m[0])

    t_pp_oracle = statistics.median(median_time(lambda m=m: pp(m), repeats) for m in oracle)
    with tempfile.TemporaryDirectory() as tmp:
        t_write_real = statistics.median(
            median_time(lambda g=g: write_labels(Path(tmp) / "x.tif", g), repeats) for g in gt
        )
    # the measured pipeline with its post-processing and writing swapped for realistic ones
    realistic = t_e2e - split["postprocess_s"] - split["write_s"] + t_pp_oracle + t_write_real

    # report -----------------------------------------------------------------------------------
    gf = lambda f, t: f / t / 1e9  # noqa: E731
    lines = [
        f"Machine: {platform.processor() or platform.machine()}, {cores} cores (shared with other jobs), "
        f"torch {torch.__version__}, {len(paths)} real LIVECell images"
        f"{' (256×352 crops: --quick)' if quick else ''}, network timings on one {w}×{h} image; "
        f"medians of {repeats} runs, variants interleaved round-robin. Load average at the start: {load0}.",
        "",
        f"Model: {model_desc}.",
        "",
        "| what | ms / image | GFLOP | GFLOP/s | % of matmul peak |",
        "|---|---|---|---|---|",
        f"| float32 `torch.matmul` {n}×{n} (peak = best of {repeats} runs; median {peak_median:.0f}) | | | {peak:.0f} | 100 % |",
        f"| **stock MONAI BasicUNet (features 32) forward** | **{1000 * t_stock:.0f}** | {flops_stock / 1e9:.1f} | "
        f"{gf(flops_stock, t_stock):.0f} | {100 * gf(flops_stock, t_stock) / peak:.0f} % |",
        f"| our network (`predict_maps`, normalize + forward + sigmoid) | {1000 * t_net:.0f} | {flops_ours / 1e9:.1f} | "
        f"{gf(flops_ours, t_net):.0f} | {100 * gf(flops_ours, t_net) / peak:.0f} % |",
        "",
        "Achieved GFLOP/s are FlopCounterMode FLOPs (2 per multiply-add) over wall time. The network can "
        "exceed the `torch.matmul` rate: on this CPU `torch.matmul` (MKL sgemm) stays well below the "
        "hardware's FMA peak while convolutions run on oneDNN kernels, so the matmul row is a same-run "
        "reference point, not a ceiling.",
        "",
        "End to end through `predict_paths`, one image per call (read → network → watershed → write "
        "uint16 TIFF), interleaved with the rows above; medians of each stage:",
        "",
        "| stage | ms / image |",
        "|---|---|",
        f"| read (LZW TIFF) | {1000 * split['read_s']:.1f} |",
        f"| network | {1000 * split['network_s']:.0f} |",
        f"| post-processing (watershed + scores) on this model's maps | {1000 * split['postprocess_s']:.1f} |",
        f"| write labels | {1000 * split['write_s']:.1f} |",
        f"| **total (measured, whole `predict_paths` call)** | **{1000 * t_e2e:.0f}** |",
        f"| post-processing on realistic maps (targets of the ground truth, {sum(len(np.unique(g)) - 1 for g in gt) // len(gt)} cells/image) | {1000 * t_pp_oracle:.1f} |",
        f"| write labels of real cells | {1000 * t_write_real:.1f} |",
        f"| **total with realistic maps** (measured total, its post-processing and write swapped for these two) | **{1000 * realistic:.0f}** |",
        "",
        f"**Full per-image cost / stock BasicUNet forward: {t_e2e / t_stock:.2f}× measured, "
        f"{realistic / t_stock:.2f}× with realistic maps** (target ≤ 1.5×).",
        "",
        f"At the model folder's default zoom (`predict_scale`: `{default_zoom}`"
        + ("; `auto` segments at zooms 1, 0.7 and 0.5 and keeps one" if default_zoom == "auto" else "")
        + f"), the whole `predict_paths` call takes **{1000 * t_e2e_default:.0f} ms** per image "
        f"({t_e2e_default / t_e2e:.2f}× the zoom-1 call, {t_e2e_default / t_stock:.2f}× the stock forward; "
        f"zooms kept: {', '.join(f'{z:g}' for z in sorted(set(zooms)))}). `--scale 1` runs one pass.",
        "",
        "Speed levers for CPU inference (network only, same interleaved run):",
        "",
        "| variant | ms / image | vs default |",
        "|---|---|---|",
    ]
    lines.append(
        f"| default: whole image, BatchNorm folded, channels_last, all cores | {1000 * t_net:.0f} | 1.00× |"
    )
    lines += [f"| {name} | {1000 * t:.0f} | {t / t_net:.2f}× {note} |" for name, t, note in rows]
    lines += [
        "",
        f"bf16 on this CPU (avx512_bf16: {'yes' if _has_cpu_bf16() else 'no'}) moves the probabilities "
        f"by up to {bf16_dev:.2g} (max abs) against float32 for this model"
        f"{' (random weights: its outputs hardly vary, so this says little)' if 'random' in model_desc else ''}.",
    ]
    if compile_note:
        lines += ["", compile_note]
    lines += [
        "",
        f"OpenMP wait policy ({cores} threads, network on the same image, fresh process each, "
        f"median of {wp_rounds} alternating rounds × {wp_n} runs):",
        "",
        "| policy | ms / image |",
        "|---|---|",
    ]
    lines += [f"| {k} | {1000 * v:.0f} |" for k, v in policy.items()]
    lines += [
        "",
        "Kept: `OMP_WAIT_POLICY=PASSIVE` (set by the predict CLI before torch loads; on a shared CPU "
        "spinning threads wait for a descheduled partner). "
        "Kept in `predict_maps`: whole-image inference up to ~1 megapixel (tiles only above), "
        "BatchNorm folded into the convolutions of a cached inference copy, channels_last on CPU, "
        "`torch.inference_mode`, all cores, no copies besides normalization and the stride padding. "
        "Not kept by default: bf16 autocast on CPU (about 2× faster here, but it changes the numbers the "
        "model was validated with; opt in with `--precision bf16`) and torch.compile (its gain "
        "varied between 0.85× and 1.03× across runs on this shared machine and it costs 7–40 s of "
        "compiling per process).",
        "",
        f"Command: `python benchmarks/bench_predict.py{' --quick' if quick else ''} --write`",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2 images, 2 repeats, no compile/TTA (< 1 min)")
    ap.add_argument("--write", action="store_true", help="update the predict section of BENCHMARKS.md")
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile variant")
    args = ap.parse_args(argv)
    with contextlib.suppress(AttributeError):
        sys.stdout.reconfigure(line_buffering=True)
    text = run(args.quick, compile_=not args.no_compile)
    from _sections import publish

    publish(SECTION, f"## Prediction speed (CPU)\n\n{text}", args.write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
