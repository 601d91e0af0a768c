"""Why `timecourse` finds the exponential phase the way it does: a simulation with known answers.

Simulated growth curves (cell counts or confluence) with a known doubling time Td = 20 h:

* ``exp``: exponential over 3 Td;
* ``lag+plateau``: flat for 1.5 Td, exponential for 3 Td, flat for 1.5 Td (the truth is the rate
  of the middle part);

with 6, 12 or 24 time points and 2, 5 or 10% log-normal noise per time point, 200 series each.
Three rules estimate the doubling time from the same series:

* **three-phase + BIC** (``livecell_seg.timecourse.analysis.fit_growth``, what the command uses);
* **easylinear** (the R package growthrates' ``fit_easylinear``, Hall et al. 2014, with its
  defaults: runs of h = 5 points, the steepest run extended over neighbours with ≥ 95% of its slope);
* **all points**: one log-linear fit through every time point.

Reported: median absolute relative error of the doubling time, and how often the 95% CI of the
rate contains the true rate. Pure numpy, deterministic (seeded), about a minute.

    python benchmarks/growth_fit_simulation.py [--write]      # --write: the growth-fit section of BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SECTION = "growth-fit"
TD = 20.0
LN2 = math.log(2.0)


def series(kind: str, n: int, noise: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Times (h) and noisy values of one simulated curve (true rate ln 2 / TD)."""
    r = LN2 / TD
    if kind == "exp":
        t = np.linspace(0, 3 * TD, n)
        log_v = r * t
    else:
        t = np.linspace(0, 6 * TD, n)
        log_v = r * (np.clip(t, 1.5 * TD, 4.5 * TD) - 1.5 * TD)
    return t, 100 * np.exp(log_v + rng.normal(0, noise, n))


def ours(t: np.ndarray, v: np.ndarray) -> tuple[float, tuple[float, float]]:
    from livecell_seg.timecourse.analysis import fit_growth

    g = fit_growth(t, v)
    return g.rate_per_h, (g.rate_ci_low, g.rate_ci_high)


def easylinear(
    t: np.ndarray, v: np.ndarray, h: int = 5, quota: float = 0.95
) -> tuple[float, tuple[float, float]]:
    """growthrates::fit_easylinear: the steepest run of ``h`` points, extended over the runs whose
    slope is at least ``quota`` times it, then one fit on those points."""
    from livecell_seg.timecourse.analysis import fit_line

    y = np.log(v)
    h = min(h, t.size)
    slopes = np.array([fit_line(t[i : i + h], y[i : i + h]).slope for i in range(t.size - h + 1)])
    k = int(np.argmax(slopes))
    ok = np.flatnonzero(slopes >= quota * slopes[k])
    lo, hi = k, k
    while lo - 1 in ok:
        lo -= 1
    while hi + 1 in ok:
        hi += 1
    f = fit_line(t[lo : hi + h], y[lo : hi + h])
    return f.slope, f.slope_ci


def all_points(t: np.ndarray, v: np.ndarray) -> tuple[float, tuple[float, float]]:
    from livecell_seg.timecourse.analysis import fit_line

    f = fit_line(t, np.log(v))
    return f.slope, f.slope_ci


RULES = {"three-phase + BIC (ours)": ours, "easylinear (growthrates)": easylinear, "all points": all_points}


def run(reps: int = 200, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    out = []
    for kind in ("exp", "lag+plateau"):
        for n in (6, 12, 24):
            for noise in (0.02, 0.05, 0.10):
                err = {k: [] for k in RULES}
                cov = {k: [] for k in RULES}
                for _ in range(reps):
                    t, v = series(kind, n, noise, rng)
                    for name, rule in RULES.items():
                        rate, (lo, hi) = rule(t, v)
                        td = LN2 / rate if rate > 0 else math.inf
                        err[name].append(abs(td - TD) / TD)
                        cov[name].append(bool(lo <= LN2 / TD <= hi))
                out.append(
                    {
                        "kind": kind,
                        "n": n,
                        "noise": noise,
                        **{f"err {k}": float(np.median(v)) for k, v in err.items()},
                        **{f"cov {k}": float(np.mean(v)) for k, v in cov.items()},
                    }
                )
                print(out[-1], flush=True)
    return out


def render(rows: list[dict], reps: int) -> str:
    names = list(RULES)
    lines = [
        "## growth-fit: finding the exponential phase (simulation)",
        "",
        f"Simulated curves with a known doubling time (20 h), {reps} per row: `exp` = exponential over 3 doubling "
        "times; `lag+plateau` = flat for 1.5, exponential for 3, flat for 1.5 doubling times. Log-normal noise per "
        "time point. Cells: median absolute error of the doubling time / share of 95% CIs of the rate that contain "
        "the true rate. Ours = `fit_growth` (three-phase linear model, breakpoints by BIC); easylinear = growthrates' "
        "`fit_easylinear` defaults (h = 5, quota 0.95); all points = one fit through every point.",
        "",
        "| curve | time points | noise | " + " | ".join(names) + " |",
        "|---|---:|---:|" + "---:|" * len(names),
    ]
    for r in rows:
        cells = [f"{100 * r['err ' + k]:.1f}% / {r['cov ' + k]:.2f}" for k in names]
        lines.append(f"| {r['kind']} | {r['n']} | {100 * r['noise']:.0f}% | " + " | ".join(cells) + " |")
    lines += ["", "Command: `python benchmarks/growth_fit_simulation.py --write`"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=200, help="series per row (default 200)")
    ap.add_argument("--write", action="store_true", help="rewrite the growth-fit section of BENCHMARKS.md")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT / "src"))
    text = render(run(args.reps), args.reps)
    sys.path.insert(0, str(Path(__file__).parent))
    from _sections import publish

    publish(SECTION, text, args.write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
