"""Train the GPU recipe inside a fixed time budget: ``make train-gpu`` (issue 23).

On one CUDA GPU, from the repository alone plus the data pack ``gpu_pack/`` (build it first with
``python scripts/build_gpu_pack.py``; ``../shared`` is not needed on the GPU machine):

1. a short probe run (``--probe-steps`` optimizer steps) measures the step rate of this machine
   (data loading included) and the fixed start-up cost of a run;
2. the real run gets ``optim.max_steps`` = what fits in the rest of ``--minutes`` (so the cosine
   schedule ends where the run ends), with ``trainer.max_minutes`` as a hard stop;
3. its model folder (``OUT/model``: weights, ``config.json``, ``summary.json``, training log)
   is the result; copy it into ``src/livecell_seg/models/default`` after choosing on the dev set.

Interrupted? Run the same command again: it resumes from ``OUT/checkpoints/last.ckpt`` with the
step count the first attempt chose (recorded in ``OUT/budget.json``). ::

    python scripts/train_gpu.py                          # configs/gpu.yaml, 9 minutes, runs/gpu
    python scripts/train_gpu.py --minutes 20 --out runs/gpu20 --set model.base_features=24
    python scripts/train_gpu.py --smoke                  # CPU, a few steps: checks the recipe runs
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))


class StepClock:
    """A Lightning callback that records the wall time at the end of every optimizer step."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def make(self):  # noqa: ANN201 - a pl.Callback, built lazily (Lightning is heavy to import)
        import lightning.pytorch as pl

        clock = self

        class _Cb(pl.Callback):
            def on_train_batch_end(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
                clock.times.append(time.perf_counter())

        return _Cb()


def run_training(cfg_path: Path, overrides: list[str], steps: int, minutes: float | None, clock: StepClock):
    from livecell_seg.training.config import load_config
    from livecell_seg.training.trainer import train

    cfg = load_config(cfg_path, [*overrides, f"optim.max_steps={steps}"])
    if minutes is not None:
        cfg.trainer.max_minutes = minutes
    return train(cfg, extra_callbacks=[clock.make()])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=str(ROOT / "configs" / "gpu.yaml"))
    ap.add_argument("--out", default=str(ROOT / "runs" / "gpu"))
    ap.add_argument("--minutes", type=float, default=9.0, help="the whole budget: probe + training + export")
    ap.add_argument("--probe-steps", type=int, default=150)
    ap.add_argument("--reserve-s", type=float, default=25.0, help="seconds kept for the export at the end")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides")
    ap.add_argument("--smoke", action="store_true", help="CPU, tiny: check that the recipe runs end to end")
    args = ap.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    t_start = time.perf_counter()
    import torch

    overrides = list(args.set) + [f"out_dir={args.out}"]
    if args.smoke:
        overrides += [
            "trainer.accelerator=cpu",
            "trainer.precision=32-true",
            "data.num_workers=1",
            "data.batch_size=2",
            "data.samples_per_epoch=4",
            "optim.warmup_steps=1",
        ]
        args.probe_steps = 4
    elif not torch.cuda.is_available():
        print("train_gpu: no CUDA GPU here (torch.cuda.is_available() is False); --smoke runs on the CPU")
        return 2
    pack = ROOT / "gpu_pack" / "MANIFEST.json"
    if not pack.is_file():
        print(f"train_gpu: {pack.parent} missing: build it with python scripts/build_gpu_pack.py")
        return 2

    out = Path(args.out)
    budget_file = out / "budget.json"
    if budget_file.is_file():  # a resumed run keeps the step count (and so the schedule) it chose
        budget = json.loads(budget_file.read_text())
        logging.info("resuming with the recorded budget %s", budget)
    else:
        probe_dir = out.parent / (out.name + "_probe")
        shutil.rmtree(probe_dir, ignore_errors=True)
        clock = StepClock()
        t0 = time.perf_counter()
        run_training(
            Path(args.config),
            [*overrides, f"out_dir={probe_dir}", "trainer.loggers=[]"],
            args.probe_steps,
            None,
            clock,
        )
        probe_s = time.perf_counter() - t0
        ts = clock.times
        skip = min(len(ts) // 3, 50)
        rate = (len(ts) - 1 - skip) / max(1e-6, ts[-1] - ts[skip]) if len(ts) > skip + 1 else 1.0
        fixed_s = probe_s - len(ts) / rate  # start-up and export of a run
        left_s = args.minutes * 60 - (time.perf_counter() - t_start) - fixed_s - args.reserve_s
        steps = max(args.probe_steps, int(rate * left_s * 0.95)) if not args.smoke else 8
        budget = {
            "steps_per_s": round(rate, 2),
            "run_fixed_s": round(fixed_s, 1),
            "probe_s": round(probe_s, 1),
            "max_steps": steps,
            "train_minutes_cap": round(max(1.0, left_s) / 60, 2),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
            "torch": torch.__version__,
        }
        out.mkdir(parents=True, exist_ok=True)
        budget_file.write_text(json.dumps(budget, indent=1) + "\n")
        shutil.rmtree(probe_dir, ignore_errors=True)
        logging.info("budget: %s", budget)
    clock = StepClock()
    run_dir = run_training(
        Path(args.config),
        overrides,
        int(budget["max_steps"]),
        float(budget["train_minutes_cap"]) + 0.5,
        clock,
    )
    summary = json.loads((Path(run_dir) / "summary.json").read_text())
    summary["budget"] = budget
    summary["wall_minutes"] = round((time.perf_counter() - t_start) / 60, 2)
    (Path(run_dir) / "model" / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    logging.info("done: %s", json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
