"""PyTorch vs ONNX Runtime on the CPU, side by side in one run, on real 704 x 520 LIVECell images.

Both backends go through the same code (:func:`predict_maps` / :func:`predict_paths`: normalize,
stride padding, network, sigmoid, watershed, write); only the network runtime differs:

- ``torch``: the default CPU path, a cached inference copy of the network with BatchNorm folded
  into the convolutions and channels_last memory (``inference.inference_net``), all cores,
  ``OMP_WAIT_POLICY=PASSIVE``;
- ``onnxruntime``: the ONNX export of the same model folder (``export_onnx``), CPU execution
  provider, all graph optimizations, all cores, idle threads sleeping (``allow_spinning=0``; a
  spinning variant is measured too).

Variants run interleaved round-robin (one warm-up each), so a load spike on the shared machine
hits all alike; medians over repeats, plus the per-round ratio onnxruntime / torch (its median
and range say whether a win is robust). Outputs are compared on all 5 sample images: maximum
absolute difference of the probability maps and identical instance labels.

Usage: ``python benchmarks/bench_onnx.py [--quick] [--write] [--repeats N]``
(``--write`` rewrites the ``onnx`` section of BENCHMARKS.md).
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

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # what the CLI does, before torch loads

SECTION = "onnx"


def interleaved_wall_cpu(
    variants: dict[str, Callable[[], object]], repeats: int
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Wall and CPU seconds (this process, all threads) of each variant, run round-robin after one
    warm-up each. CPU time hardly depends on what else runs on the machine; wall time does."""
    for fn in variants.values():
        fn()
    wall: dict[str, list[float]] = {k: [] for k in variants}
    cpu: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(repeats):
        for k, fn in variants.items():
            t, c = time.perf_counter(), time.process_time()
            fn()
            cpu[k].append(time.process_time() - c)
            wall[k].append(time.perf_counter() - t)
    return wall, cpu


def run(quick: bool, repeats: int) -> str:
    import onnxruntime as ort
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_predict import load_model
    from livecell_seg.data import sample_paths
    from livecell_seg.inference.network_export import export_onnx
    from livecell_seg.inference.onnx_backend import OnnxRuntimeNet, make_session
    from livecell_seg.inference.postprocess import instances_from_maps
    from livecell_seg.inference.runner import predict_paths
    from livecell_seg.inference.tiling import inference_net, predict_maps
    from livecell_seg.io import list_images, normalize_image, read_image
    from livecell_seg.model.folder import LoadedModel

    load0 = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    cores = os.cpu_count() or 1
    torch.set_num_threads(cores)
    paths = list_images(sample_paths()[1])
    images = [read_image(p) for p in paths]
    if quick:
        images = [im[:256, :352] for im in images[:2]]
        repeats = min(repeats, 3)
    h, w = images[0].shape
    img = images[0]

    model, model_desc = load_model()
    tmp = tempfile.TemporaryDirectory()
    onnx_path = Path(tmp.name) / "model.onnx"
    t0 = time.perf_counter()
    export_onnx(model, onnx_path)
    export_s = time.perf_counter() - t0

    def ort_model(threads: int, spinning: bool) -> LoadedModel:
        s = make_session(onnx_path, num_threads=threads, spinning=spinning)
        return LoadedModel(
            net=OnnxRuntimeNet(s, onnx_path),
            model_config=model.model_config,
            config=model.config,
            postprocess_file=model.postprocess_file,
            path=model.path,
        )

    ort_all = ort_model(cores, False)
    ort_spin = ort_model(cores, True)
    ort_one = ort_model(1, False)

    # network only: the forward pass on the prepared (normalized, stride-padded) tensor
    stride = model.stride
    hp, wp = -(-h // stride) * stride, -(-w // stride) * stride
    x = np.pad(normalize_image(img), ((0, hp - h), (0, wp - w)), mode="reflect")[None, None]
    xt = torch.from_numpy(np.ascontiguousarray(x)).contiguous(memory_format=torch.channels_last)
    tnet = inference_net(model, "cpu", channels_last=True)
    xs = np.ascontiguousarray(x, dtype=np.float32)

    def torch_forward() -> None:
        with torch.inference_mode():
            torch.sigmoid(tnet(xt))

    def ort_forward() -> None:
        ort_all.net.session.run(None, {ort_all.net.input_name: xs})

    def one_thread(fn: Callable[[], object]) -> Callable[[], object]:
        def inner() -> None:
            torch.set_num_threads(1)
            try:
                fn()
            finally:
                torch.set_num_threads(cores)

        return inner

    out_dir = tempfile.TemporaryDirectory()
    e2e: dict[str, list[dict[str, float]]] = {"torch": [], "onnxruntime": []}
    counters = {k: iter(range(10**9)) for k in e2e}
    in_dir = tempfile.TemporaryDirectory()
    if quick:  # crops as LZW TIFFs, so that reading is part of the pipeline too
        import tifffile

        paths = []
        for i, im in enumerate(images):
            paths.append(Path(in_dir.name) / f"crop{i}.tif")
            tifffile.imwrite(paths[-1], im, compression="lzw")

    def pipeline(name: str, m: LoadedModel) -> Callable[[], None]:
        def inner() -> None:
            path = paths[next(counters[name]) % len(paths)]
            # at zoom 1 (one network pass per image) whatever the model folder's predict_scale says
            s = predict_paths(
                [path], Path(out_dir.name) / name, model=m, progress=False, num_threads=cores, scale=1.0
            )
            e2e[name].extend(s.timings)

        return inner

    variants: dict[str, Callable[[], object]] = {
        "torch forward": torch_forward,
        "onnxruntime forward": ort_forward,
        "torch predict_maps": lambda: predict_maps(model, img),
        "onnxruntime predict_maps": lambda: predict_maps(ort_all, img),
        "onnxruntime predict_maps, spinning threads": lambda: predict_maps(ort_spin, img),
        "torch predict_maps, 1 thread": one_thread(lambda: predict_maps(model, img)),
        "onnxruntime predict_maps, 1 thread": lambda: predict_maps(ort_one, img),
        "torch end to end": pipeline("torch", model),
        "onnxruntime end to end": pipeline("onnxruntime", ort_all),
    }
    raw, cpu = interleaved_wall_cpu(variants, repeats)
    med = {k: statistics.median(v) for k, v in raw.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}

    def ratio(a: str, b: str) -> tuple[float, float, float, float]:
        """(median time ratio a/b, median per-round ratio, min, max)."""
        per_round = [x / y for x, y in zip(raw[a], raw[b])]
        return med[a] / med[b], statistics.median(per_round), min(per_round), max(per_round)

    # outputs: maps and labels of every image, both backends
    params = model.params
    max_diff, label_diff, cells = 0.0, [], 0
    for im in images:
        mt = predict_maps(model, im)
        mo = predict_maps(ort_all, im)
        max_diff = max(max_diff, float(np.abs(mt - mo).max()))
        lt = instances_from_maps(mt, model.head, params)
        lo = instances_from_maps(mo, model.head, params)
        cells += int(lt.max())
        label_diff.append(int((lt != lo).sum()))
    load1 = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    tmp.cleanup()
    out_dir.cleanup()
    in_dir.cleanup()

    def row(name: str, t_name: str, o_name: str) -> str:
        r, pr, lo, hi = ratio(o_name, t_name)
        return (
            f"| {name} | {1000 * med[t_name]:.0f} | {1000 * med[o_name]:.0f} | **{r:.2f}×** | "
            f"{pr:.2f}× ({lo:.2f}–{hi:.2f}) | {1000 * med_cpu[t_name]:.0f} / {1000 * med_cpu[o_name]:.0f} "
            f"= {med_cpu[o_name] / med_cpu[t_name]:.2f}× |"
        )

    e2e_split = {
        k: {s: statistics.median(t[s] for t in v[1:]) for s in v[0]} for k, v in e2e.items() if len(v) > 1
    }
    r_e2e = ratio("onnxruntime end to end", "torch end to end")
    r_net = ratio("onnxruntime predict_maps", "torch predict_maps")
    lines = [
        f"Machine: {platform.processor() or platform.machine()}, {cores} cores (shared with other jobs), "
        f"torch {torch.__version__}, onnxruntime {ort.__version__}; {len(images)} real LIVECell images"
        f"{' (256×352 crops: --quick)' if quick else ''}, timings on one {w}×{h} image; medians of "
        f"{repeats} runs, all variants interleaved round-robin. Load average (1/5/15 min) at the start: "
        f"{load0}, at the end: {load1}. CPU ms = CPU time of the process (all threads) per image: "
        "other jobs inflate it too, but much less than wall time.",
        "",
        f"Model: {model_desc}. ONNX export: {export_s:.0f} s (opset 18, dynamo exporter; "
        "`predict --backend onnxruntime` does it once per model and caches the file).",
        "",
        "| what (all cores unless said) | torch ms | onnxruntime ms | onnxruntime / torch (medians) | "
        "per-round ratio: median (min–max) | CPU ms, torch / onnxruntime |",
        "|---|---|---|---|---|---|",
        row("network forward only (prepared input, + sigmoid)", "torch forward", "onnxruntime forward"),
        row(
            "`predict_maps` (normalize, pad, forward, sigmoid)",
            "torch predict_maps",
            "onnxruntime predict_maps",
        ),
        row(
            "`predict_maps`, onnxruntime threads spinning",
            "torch predict_maps",
            "onnxruntime predict_maps, spinning threads",
        ),
        row(
            "`predict_maps`, 1 thread each",
            "torch predict_maps, 1 thread",
            "onnxruntime predict_maps, 1 thread",
        ),
        row(
            "**end to end** (`predict_paths` at zoom 1: read, network, watershed, write)",
            "torch end to end",
            "onnxruntime end to end",
        ),
        "",
    ]
    if e2e_split:
        lines += [
            "End-to-end split (medians, ms): "
            + "; ".join(
                f"{k}: " + ", ".join(f"{s[:-2]} {1000 * v:.0f}" for s, v in sp.items())
                for k, sp in e2e_split.items()
            )
            + ".",
            "",
        ]
    lines += [
        f"**Same outputs**: maximum absolute difference of the probability maps over the {len(images)} images "
        f"{max_diff:.1e} (≤ 1e-4: {'yes' if max_diff <= 1e-4 else 'NO'}); instance labels after the watershed "
        f"differ in {sum(label_diff)} pixels ({cells} cells in all).",
        "",
    ]
    faster = r_e2e[0] < 0.95 and r_e2e[3] < 1.0 and r_net[0] < 0.95
    verdict = (
        f"onnxruntime end to end: {r_e2e[0]:.2f}× torch's time (per-round {r_e2e[2]:.2f}–{r_e2e[3]:.2f}×)"
        f"; network (`predict_maps`): {r_net[0]:.2f}× (per-round {r_net[2]:.2f}–{r_net[3]:.2f}×). "
    )
    if faster:
        verdict += "onnxruntime won in every round by at least 5% at the median: a real win."
    else:
        verdict += (
            "Not a robust win by the rule for a new CPU default (≥ 5% faster at the median end to end and "
            "on the network, and faster in every round), so PyTorch stays the default; "
            "`--backend onnxruntime` is an option."
        )
    lines += [verdict, "", f"Command: `python benchmarks/bench_onnx.py{' --quick' if quick else ''} --write`"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2 cropped images, 3 repeats (smoke test)")
    ap.add_argument("--write", action="store_true", help="update the onnx section of BENCHMARKS.md")
    ap.add_argument("--repeats", type=int, default=15, help="rounds of the interleaved loop (default 15)")
    args = ap.parse_args(argv)
    with contextlib.suppress(AttributeError):
        sys.stdout.reconfigure(line_buffering=True)
    text = run(args.quick, args.repeats)
    from _sections import publish

    publish(SECTION, f"## ONNX Runtime vs PyTorch (CPU)\n\n{text}", args.write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
