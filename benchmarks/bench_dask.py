"""predict on Dask: images/s of serial predict vs 1 and 2 local Dask workers, and Dask's overhead per image.

One process, side by side, interleaved round-robin (the CPU is shared: a load spike slows every
variant alike); medians over rounds; the same real LIVECell images (the 5 bundled 704 x 520 sample
images, repeated under other names), the bundled model, every variant warm (model loaded):

- serial ``predict_paths``, 1 torch thread, and with all cores (the default);
- :func:`livecell_seg.inference.distributed.run_images` on a ``LocalCluster`` of 1 worker and one of 2 workers
  (1 thread each, as ``--local-workers`` starts them). Both clusters are started once, up front,
  and warmed up (each worker loads the model); their start-up is timed separately, since it is
  paid once per run, not per image.

Dask's overhead per image is measured two ways: (1 worker wall - serial 1-thread wall) / images,
and (1 worker wall - the time the worker spent inside ``segment_file``) / images; plus the
round trip of a no-op task (the scheduler's own cost per task, which bounds how many tasks per
second one scheduler can hand out, hence ``images_per_task``).

Usage: ``python benchmarks/bench_dask.py [--quick] [--write] [--images N] [--rounds R]``
(``--write`` rewrites the ``dask`` section of BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the CLI (before torch is imported)

ROOT = Path(__file__).resolve().parent.parent
SECTION = "dask"


def _noop(i: int) -> int:
    return i


def noop_round_trip(client, n: int) -> float:  # noqa: ANN001
    """Seconds per no-op task, submitted and collected the way ``run_images`` does it."""
    import distributed

    t = time.perf_counter()
    futs = [client.submit(_noop, i, pure=False) for i in range(n)]
    for f in distributed.as_completed(futs):
        f.result()
        f.release()
    return (time.perf_counter() - t) / n


def make_inputs(folder: Path, n: int) -> list[Path]:
    """``n`` real sample images (hard links or copies of the 5 bundled ones, other names)."""
    import shutil

    sys.path.insert(0, str(ROOT / "src"))
    from livecell_seg.data import sample_paths
    from livecell_seg.io import list_images

    src = list_images(sample_paths()[1])
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        p = src[i % len(src)]
        q = folder / f"{p.stem}_{i:04d}{p.suffix}"
        try:
            os.link(p, q)
        except OSError:
            shutil.copy(p, q)
        out.append(q)
    return sorted(out)


def run(n_images: int, rounds: int) -> tuple[str, dict]:
    import distributed
    import torch

    sys.path.insert(0, str(ROOT / "src"))
    from livecell_seg.demo_pipeline import machine_info
    from livecell_seg.inference.distributed import ClusterOptions, images_per_task, open_client, run_images
    from livecell_seg.inference.predict import load_model_for_predict
    from livecell_seg.inference.runner import predict_paths

    tmp = Path(tempfile.mkdtemp(prefix="bench_dask_"))
    paths = make_inputs(tmp / "in", n_images)
    model = load_model_for_predict(None, "cpu")
    load_before = os.getloadavg()

    clusters, startup = {}, {}
    stack = contextlib.ExitStack()
    for n in (1, 2):
        t = time.perf_counter()
        # the very cluster `--local-workers n` starts
        client, _ = stack.enter_context(open_client(ClusterOptions(local_workers=n)))
        started = time.perf_counter() - t
        address = client.scheduler.address
        # warm-up: every worker loads the model (one single-image task per worker)
        run_images(
            paths[:n], tmp / f"warm{n}", ClusterOptions(scheduler=address, images_per_task=1), progress=False
        )
        startup[n] = (started, time.perf_counter() - t)
        clusters[n] = (address, client)

    variants = {
        "serial, 1 thread": lambda out: predict_paths(paths, out, model=model, num_threads=1, progress=False),
        f"serial, all cores ({os.cpu_count()} threads)": lambda out: predict_paths(
            paths, out, model=model, progress=False
        ),
        "Dask, 1 local worker": lambda out: run_images(
            paths, out, ClusterOptions(scheduler=clusters[1][0]), progress=False
        ),
        "Dask, 2 local workers": lambda out: run_images(
            paths, out, ClusterOptions(scheduler=clusters[2][0]), progress=False
        ),
    }
    walls: dict[str, list[float]] = {k: [] for k in variants}
    busy: dict[str, list[float]] = {k: [] for k in variants}
    noop: list[float] = []
    for r in range(rounds):
        for name, fn in variants.items():
            out = tmp / f"out_{r}_{len(walls[name])}_{abs(hash(name))}"
            t = time.perf_counter()
            s = fn(out)
            walls[name].append(time.perf_counter() - t)
            assert s.ok and len(s.processed) == n_images, name
            busy[name].append(sum(x["total_s"] for x in s.timings))
        noop.append(noop_round_trip(clusters[1][1], 50 if n_images < 20 else 200))
    logging.getLogger("distributed").setLevel(logging.CRITICAL)  # shutting down is not news
    stack.close()
    load_after = os.getloadavg()

    med = {k: statistics.median(v) for k, v in walls.items()}
    names = list(variants)
    s1, sall, d1, d2 = (med[k] for k in names)
    ips = {k: n_images / v for k, v in med.items()}
    over_vs_serial = (d1 - s1) / n_images
    over_vs_busy = statistics.median((w - b) / n_images for w, b in zip(walls[names[2]], busy[names[2]]))
    per_task = statistics.median(noop)
    t_img = s1 / n_images
    predicted2 = 2 / (t_img + over_vs_serial)
    info = machine_info()
    per1, per2 = images_per_task(n_images, 1), images_per_task(n_images, 2)
    rows = [
        "| run | images/s | s / image | vs serial, 1 thread |",
        "|---|---|---|---|",
    ]
    for k in names:
        rows.append(f"| {k} | {ips[k]:.2f} | {med[k] / n_images:.3f} | {s1 / med[k]:.2f}× |")
    text = "\n".join(
        [
            f"Machine: {info.get('cpu', 'CPU')}, {os.cpu_count()} cores (shared with other jobs; load average "
            f"{load_before[0]:.1f} before, {load_after[0]:.1f} after), torch {torch.__version__}, "
            f"distributed {distributed.__version__}. {n_images} real 704×520 LIVECell images (the 5 bundled sample "
            f"images, repeated), the bundled model, labels only; {rounds} rounds, the 4 runs interleaved in each, "
            "medians. Every run is warm (model loaded); Dask workers are 1-thread processes as `--local-workers` "
            f"starts them, tasks of {per1} (1 worker) and {per2} (2 workers) images (`images_per_task`).",
            "",
            *rows,
            "",
            f"**Dask's overhead per image: {1000 * over_vs_serial:.0f} ms** against serial with the same 1 thread "
            f"({100 * over_vs_serial / t_img:.1f} % of the {1000 * t_img:.0f} ms an image takes), "
            f"**{1000 * over_vs_busy:.0f} ms** measured as the 1-worker run's wall time minus the time its worker "
            "spent segmenting (read, network, watershed, write). A no-op task's round trip through the scheduler "
            f"(submit → run → result on the client) takes {1000 * per_task:.1f} ms, i.e. "
            f"{1000 * per_task / max(per1, 1):.2f} ms per image in tasks of {per1}.",
            "",
            "Fixed cost per run, not per image: starting the local cluster "
            f"{startup[1][0]:.1f} s (1 worker) / {startup[2][0]:.1f} s (2 workers), and "
            f"{startup[1][1] - startup[1][0]:.1f} s / {startup[2][1] - startup[2][0]:.1f} s more until every worker "
            "has imported torch, loaded the model and segmented its first image.",
            "",
            f"Scaling: with t = {1000 * t_img:.0f} ms per image on one thread and o = {1000 * over_vs_serial:.0f} ms "
            "of overhead, W single-thread workers on W free cores give about W / (t + o) images/s "
            f"(2 workers: {predicted2:.2f} predicted, {ips[names[3]]:.2f} measured here, where the 2 workers share "
            "the machine's 2 cores with the client, the scheduler and other jobs). One scheduler hands out "
            f"roughly 1 / {1000 * per_task:.1f} ms ≈ {1 / per_task:.0f} tasks/s here, so with tasks of 8 images "
            f"it keeps up to about {8 / per_task:.0f} images/s busy (~{8 / per_task * t_img:.0f} CPU workers at "
            f"{1000 * t_img:.0f} ms/image) before it becomes the bottleneck.",
            "",
            f"Command: `python benchmarks/bench_dask.py --images {n_images} --rounds {rounds} --write`",
        ]
    )
    return text, {"walls": walls, "startup": startup, "noop": noop, "overhead": over_vs_serial}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="6 images, 1 round (smoke test)")
    ap.add_argument("--write", action="store_true", help="update the dask section of BENCHMARKS.md")
    ap.add_argument("--images", type=int, default=40, help="images per run (default 40)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    args = ap.parse_args(argv)
    n, r = (6, 1) if args.quick else (args.images, args.rounds)
    text, _ = run(n, r)
    from _sections import publish

    publish(SECTION, f"## predict on Dask: serial vs local workers\n\n{text}", args.write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
