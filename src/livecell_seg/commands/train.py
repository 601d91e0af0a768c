"""`livecell-seg train --config cfg.yaml [--set key=value ...]`: train a U-Net with Lightning."""

from __future__ import annotations

import argparse

from ..options import integer, seed


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add this subcommand's options."""
    parser.add_argument(
        "--config",
        "-c",
        help="YAML/JSON training config (e.g. configs/sample_cpu.yaml); default: built-in defaults",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        metavar="KEY=VALUE",
        nargs="+",
        action="extend",
        default=[],
        help="override config values, dotted keys, YAML values: optim.lr=1e-3 data.batch_size=4",
    )
    parser.add_argument("--out", help="run folder (= out_dir); resumed when it holds checkpoints/last.ckpt")
    res = parser.add_mutually_exclusive_group()
    res.add_argument(
        "--resume", action="store_true", help="resume from OUT/checkpoints/last.ckpt (error if none)"
    )
    res.add_argument("--no-resume", action="store_true", help="start afresh even if a checkpoint exists")
    parser.add_argument("--devices", help="Lightning devices (number, list or 'auto')")
    parser.add_argument(
        "--num-nodes", type=integer(1, 100_000), help="number of nodes (multi-node DDP, e.g. SLURM)"
    )
    parser.add_argument("--strategy", help="Lightning strategy: auto, ddp, ddp_spawn, ...")
    parser.add_argument("--accelerator", help="auto, cpu, gpu, ...")
    parser.add_argument("--seed", type=seed, help="random seed")
    parser.add_argument(
        "--print-config", action="store_true", help="print the resolved config as YAML and exit"
    )


def run(args: argparse.Namespace) -> int:
    """Run the subcommand."""
    from ..training.config import config_to_dict, load_config

    overrides = list(args.overrides or [])
    for flag, key in (
        ("out", "out_dir"),
        ("devices", "trainer.devices"),
        ("num_nodes", "trainer.num_nodes"),
        ("strategy", "trainer.strategy"),
        ("accelerator", "trainer.accelerator"),
        ("seed", "seed"),
    ):
        value = getattr(args, flag)
        if value is not None:
            overrides.append(f"{key}={value}")
    if args.resume:
        overrides.append("resume=true")
    if args.no_resume:
        overrides.append("resume=false")
    cfg = load_config(args.config, overrides)
    if args.print_config:
        import yaml

        print(yaml.safe_dump(config_to_dict(cfg), sort_keys=False), end="")
        return 0
    from ..training.trainer import train

    run_dir = train(cfg)
    print(f"run folder: {run_dir}  (model folder: {run_dir / 'model'})")
    return 0
