"""Plots and the self-contained ``index.html`` of a time course (:mod:`livecell_seg.timecourse.analysis`).

matplotlib is imported inside the functions (``Figure`` objects, no pyplot state), so importing
this module costs nothing.

- :func:`growth_curves_png`: count and confluence per well, relative to the first time point, on a
  log₂ axis (a straight line is exponential growth; its slope is doublings per hour), with the
  fitted exponential drawn over the time points it used;
- :func:`absolute_png`: the same means ± SD in absolute units (cells per image, % confluence);
- :func:`plate_heatmap_png`: doubling times on the plate layout (96- or 384-well) when the wells
  span a plate;
- :func:`frame_strip_png`: outlined segmentations of one well's frames over time;
- :func:`write_report`: all of them to ``OUT/plots/`` and ``OUT/index.html`` (PNGs embedded).
"""

from __future__ import annotations

import html
import io
import math
import re
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import LivecellError
from ..inference.outputs import overlay_image
from ..io import atomic_path, read_image, read_labels
from ..reports import CSS, figure_png, format_number, html_table, img_tag

if TYPE_CHECKING:  # pragma: no cover
    from .analysis import Frame, TimecourseResult

_WELL_RE = re.compile(r"^([A-Za-z]{1,2})(\d{1,2})$")
#: at most this many wells get a frame strip in index.html
MAX_STRIPS = 12


def well_label(cell_type: str, well: str) -> str:
    """``"SkBr3 H3"`` (or the well alone without a cell type)."""
    return f"{cell_type} {well}".strip()


def _fits_by_well(growth: Sequence[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    return {(g["cell_type"], g["well"], g["metric"]): g for g in growth}


def format_doubling_time(g: dict[str, Any] | None) -> str:
    """``"20.1 h [15.2, 29.8]"``, or ``"–"`` when there is no rate."""
    if g is None or not g["doubling_time_h"] == g["doubling_time_h"]:
        return "–"
    lo, hi = g["doubling_time_ci_low"], g["doubling_time_ci_high"]
    ci = ""
    if lo == lo:
        ci = f" [{lo:.1f}, {'∞' if math.isinf(hi) else f'{hi:.1f}'}]"
    return f"{g['doubling_time_h']:.1f} h{ci}"


def growth_curves_png(
    per_well_time: Sequence[dict[str, Any]], growth: Sequence[dict[str, Any]], max_legend: int = 14
) -> bytes:
    """Count and confluence relative to each well's first time point, log₂ axis, fits dashed."""
    fits = _fits_by_well(growth)
    fig, axes, wells, colors = _well_panels(per_well_time, 4.2)
    for ax, metric, title in (
        (axes[0], "count", "Cell count"),
        (axes[1], "confluence", "Confluence"),
    ):
        for i, ((ct, well), rs) in enumerate(wells.items()):
            t = np.array([r["time_h"] for r in rs])
            base = rs[0][f"{metric}_mean"]
            if not base or base != base:
                continue
            y = np.array([r[f"{metric}_mean"] for r in rs]) / base
            sd = np.array([r[f"{metric}_sd"] for r in rs], dtype=float) / base
            g = fits.get((ct, well, metric))
            label = well_label(ct, well)
            if g is not None and g["meaningful"]:
                label += f": Td {format_doubling_time(g)}"
            elif g is not None and g["doubling_time_h"] == g["doubling_time_h"]:
                label += f": Td {g['doubling_time_h']:.1f} h (n.m.)"
            ok = y > 0
            ax.errorbar(
                t[ok],
                y[ok],
                yerr=np.where(np.isfinite(sd[ok]), sd[ok], 0.0),
                fmt="o-",
                ms=4,
                lw=1.2,
                capsize=2,
                color=colors[i],
                label=label if i < max_legend else None,
            )
            if g is not None and g["rate_per_h"] == g["rate_per_h"] and g["n_used"] >= 2:
                tt = np.linspace(g["t_start_h"], g["t_end_h"], 20)
                yy = np.exp(g["intercept"] + g["rate_per_h"] * tt) / base
                ax.plot(tt, yy, "--", color=colors[i], lw=2.2, alpha=0.7 if g["meaningful"] else 0.3)
        _fold_axis(ax)
        ax.set_xlabel("time (h)")
        ax.set_ylabel("fold change from the first time point (log scale)")
        ax.set_title(f"{title} (dashed: exponential fit)")
        ax.grid(True, which="both", alpha=0.25)
        ax.spines[["top", "right"]].set_visible(False)
        if wells:
            ax.legend(
                fontsize=7,
                title="Td: doubling time [95% CI]",
                title_fontsize=7,
                frameon=False,
                loc="upper left",
            )
    fig.subplots_adjust(left=0.075, right=0.985, bottom=0.12, top=0.92, wspace=0.22)  # (tight_layout is slow)
    return figure_png(fig, 110)


_FOLD_TICKS = (
    1 / 16,
    1 / 8,
    1 / 4,
    1 / 2,
    0.75,
    1,
    1.25,
    1.5,
    1.75,
    2,
    2.5,
    3,
    4,
    6,
    8,
    12,
    16,
    24,
    32,
    64,
    128,
)


def _fold_axis(ax: Any) -> None:
    """A log₂ y axis labelled in plain fold changes (×1, ×1.5, ×2, ...)."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    ax.set_yscale("log", base=2)
    lo, hi = ax.get_ylim()
    ticks = [v for v in _FOLD_TICKS if lo <= v <= hi]
    while len(ticks) > 9:
        ticks = ticks[::2]
    ax.yaxis.set_major_locator(FixedLocator(ticks or [1]))
    ax.yaxis.set_minor_locator(NullLocator())
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"×{v:g}"))


def absolute_png(per_well_time: Sequence[dict[str, Any]], pixel_size_um: float | None = None) -> bytes:
    """Mean ± SD over fields/crops of the count (per image, and per mm² on the right axis when
    ``pixel_size_um`` is known) and of the confluence (%), per well."""
    fig, axes, wells, colors = _well_panels(per_well_time, 3.8)
    for ax, col, ylabel in (
        (axes[0], "count", "cells per image"),
        (axes[1], "confluence", "confluence (% of the image)"),
    ):
        for i, ((ct, well), rs) in enumerate(wells.items()):
            t = [r["time_h"] for r in rs]
            m = [r[f"{col}_mean"] for r in rs]
            sd = [r[f"{col}_sd"] if r[f"{col}_sd"] == r[f"{col}_sd"] else 0.0 for r in rs]
            ax.errorbar(t, m, yerr=sd, fmt="o-", ms=3.5, lw=1.1, capsize=2, color=colors[i],
                        label=well_label(ct, well) if i < 14 else None)  # fmt: skip
        ax.set_xlabel("time (h)")
        ax.set_ylabel(ylabel)
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.25)
        ax.spines[["top", "right"]].set_visible(False)
    axes[1].set_ylim(0, 100)
    if wells:
        axes[0].legend(fontsize=7, frameon=False)
    dens = [r["cells_per_mm2_mean"] for r in per_well_time if r["count_mean"]]
    cnt = [r["count_mean"] for r in per_well_time if r["count_mean"]]
    if pixel_size_um and dens and all(d == d for d in dens):
        k = float(np.median(np.asarray(dens) / np.asarray(cnt)))  # mm⁻² per cell of one image
        sec = axes[0].secondary_yaxis("right", functions=(lambda c: c * k, lambda d: d / k))
        sec.set_ylabel("cells per mm²")
    fig.subplots_adjust(left=0.065, right=0.985, bottom=0.13, top=0.96, wspace=0.42)
    return figure_png(fig, 110)


def plate_layout(wells: Sequence[str]) -> tuple[int, int] | None:
    """(rows, columns) of the smallest standard plate (96 or 384 wells, else the bounding box)
    holding every well name like ``A1``/``H12``; None when a name is not a plate position."""
    rows, cols = [], []
    for w in wells:
        m = _WELL_RE.match(w)
        if m is None:
            return None
        letters = m.group(1).upper()
        r = 0
        for ch in letters:
            r = r * 26 + (ord(ch) - ord("A") + 1)
        rows.append(r)
        cols.append(int(m.group(2)))
    if not rows or min(cols) < 1:
        return None
    for nr, nc in ((8, 12), (16, 24)):
        if max(rows) <= nr and max(cols) <= nc:
            return nr, nc
    return max(rows), max(cols)


def _row_index(well: str) -> tuple[int, int]:
    m = _WELL_RE.match(well)
    assert m is not None
    r = 0
    for ch in m.group(1).upper():
        r = r * 26 + (ord(ch) - ord("A") + 1)
    return r - 1, int(m.group(2)) - 1


def plate_groups(growth: Sequence[dict[str, Any]]) -> dict[str, list[dict[str, Any]]] | None:
    """Count fits grouped by plate, or None when no heat map should be drawn.

    A heat map is drawn when at least 2 wells have plate positions. Wells are taken to share one
    plate when no well name repeats across cell types (LIVECell's layout); otherwise each cell type
    is its own plate.
    """
    count = [g for g in growth if g["metric"] == "count"]
    if len({(g["cell_type"], g["well"]) for g in count}) < 2:
        return None
    if plate_layout([g["well"] for g in count]) is None:
        return None
    names = [g["well"] for g in count]
    if len(set(names)) == len(names):
        return {"": count}
    plates: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for g in count:
        plates[g["cell_type"]].append(g)
    return dict(plates)


def plate_heatmap_png(growth: Sequence[dict[str, Any]]) -> bytes | None:
    """Count doubling time (h) per well on the plate layout; grey = fitted but not meaningful,
    blank = not imaged. None when the wells do not span a plate (:func:`plate_groups`)."""
    from matplotlib import colormaps
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    plates = plate_groups(growth)
    if plates is None:
        return None
    meaningful = [g["doubling_time_h"] for g in growth if g["metric"] == "count" and g["meaningful"]]
    vmin, vmax = (min(meaningful), max(meaningful)) if meaningful else (0.0, 1.0)
    if vmax - vmin < 1e-9:
        vmin, vmax = vmin * 0.9, vmax * 1.1 + 1e-9
    norm = Normalize(vmin, vmax)
    cmap = colormaps["viridis_r"]
    layouts = {name: plate_layout([g["well"] for g in gs]) for name, gs in plates.items()}
    nc_max = max(lay[1] for lay in layouts.values() if lay)
    fig = Figure(figsize=(min(14.0, 1.0 + 0.62 * nc_max), 0.6 + 3.6 * len(plates)))
    axes = np.atleast_1d(fig.subplots(len(plates), 1, squeeze=False)[:, 0])
    for ax, (name, gs) in zip(axes, plates.items()):
        lay = layouts[name]
        assert lay is not None
        nr, nc = lay
        ax.set_xlim(-0.5, nc - 0.5)
        ax.set_ylim(nr - 0.5, -0.5)
        ax.set_xticks(range(nc), [str(i + 1) for i in range(nc)], fontsize=7)
        ax.set_yticks(range(nr), [_row_name(i) for i in range(nr)], fontsize=7)
        ax.tick_params(length=0)
        ax.set_aspect("equal")
        for i in range(nr):
            for j in range(nc):
                ax.add_patch(_circle(j, i, "white", "#cccccc"))
        for g in gs:
            i, j = _row_index(g["well"])
            if g["meaningful"]:
                c = cmap(norm(g["doubling_time_h"]))
                ax.add_patch(_circle(j, i, c, "#333333"))
                txt, tc = (
                    f"{g['doubling_time_h']:.0f}",
                    "white" if norm(g["doubling_time_h"]) > 0.5 else "black",
                )
            else:
                ax.add_patch(_circle(j, i, "#d9d9d9", "#777777", hatch="///"))
                txt, tc = "n.m.", "#444444"
            ax.text(j, i, txt, ha="center", va="center", fontsize=6.5, color=tc)
            if g["cell_type"] and name == "":
                ax.text(j, i + 0.42, g["cell_type"], ha="center", va="top", fontsize=5, color="#555555")
        ax.set_title(
            f"Doubling time of the cell count (h){': ' + name if name else ''}; "
            "hatched = not meaningful (see growth.csv), blank = not imaged",
            fontsize=9,
        )
        for s in ax.spines.values():
            s.set_visible(False)
    from matplotlib.cm import ScalarMappable

    if meaningful:
        fig.colorbar(ScalarMappable(norm, cmap), ax=list(axes), shrink=0.8, label="doubling time (h)")
    return figure_png(fig, 110)


def _circle(x: float, y: float, face: Any, edge: str, hatch: str | None = None) -> Any:
    from matplotlib.patches import Circle

    return Circle((x, y), 0.42, facecolor=face, edgecolor=edge, lw=0.8, hatch=hatch)


def _row_name(i: int) -> str:
    s, n = "", i + 1
    while n:
        n, rem = divmod(n - 1, 26)
        s = chr(ord("A") + rem) + s
    return s


def _by_well(per_well_time: Sequence[dict[str, Any]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    wells: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in per_well_time:
        wells[(r["cell_type"], r["well"])].append(r)
    for rs in wells.values():
        rs.sort(key=lambda r: r["time_h"])
    return dict(wells)


def _well_panels(per_well_time: Sequence[dict[str, Any]], height: float) -> tuple[Any, Any, dict, list[Any]]:
    """A figure with two panels side by side, the rows grouped by well, and a colour per well."""
    from matplotlib.figure import Figure

    wells = _by_well(per_well_time)
    fig = Figure(figsize=(11, height))
    return fig, fig.subplots(1, 2), wells, _colors(len(wells))


def _colors(n: int) -> list[Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(max(n, 1))]


def strip_frames(frames: Sequence[Frame], max_frames: int = 6) -> list[Frame]:
    """One frame per time point (the first field/crop in name order), at most ``max_frames``
    spread evenly from the first to the last time point."""
    by_time: dict[float, Frame] = {}
    for f in sorted(frames, key=lambda f: (f.time_h, f.field, f.crop, f.path.name)):
        by_time.setdefault(f.time_h, f)
    times = sorted(by_time)
    if len(times) > max_frames:
        idx = np.unique(np.round(np.linspace(0, len(times) - 1, max_frames)).astype(int))
        times = [times[i] for i in idx]
    return [by_time[t] for t in times]


def frame_strip_png(
    items: Sequence[tuple[str, np.ndarray, np.ndarray]], scale: float = 0.5, columns: int = 3
) -> bytes:
    """A grid of outlined segmentations (``columns`` per row, each scaled by ``scale``) with a
    title above each; ``items`` are ``(title, image, labels)``. Drawn with Pillow."""
    from PIL import Image, ImageDraw, ImageFont

    tiles = []
    for _title, image, labels in items:
        ov = Image.fromarray(overlay_image(image, labels))
        w, h = max(1, round(ov.width * scale)), max(1, round(ov.height * scale))
        tiles.append(ov.resize((w, h), Image.Resampling.BOX) if (w, h) != ov.size else ov)
    if not tiles:
        raise ValueError("no frames to draw")
    try:
        font = ImageFont.load_default(size=14)
    except TypeError:  # Pillow without FreeType
        font = ImageFont.load_default()
    cols = min(columns, len(tiles))
    rows = math.ceil(len(tiles) / cols)
    tw, th = max(t.width for t in tiles), max(t.height for t in tiles)
    pad, head = 6, 22
    canvas = Image.new("RGB", (cols * (tw + pad) + pad, rows * (th + head + pad) + pad), "white")
    draw = ImageDraw.Draw(canvas)
    for k, (tile, (title, _i, _l)) in enumerate(zip(tiles, items)):
        r, c = divmod(k, cols)
        x, y = pad + c * (tw + pad), pad + r * (th + head + pad)
        draw.text((x, y + 2), title, fill="black", font=font)
        canvas.paste(tile, (x, y + head))
    buf = io.BytesIO()
    canvas.save(buf, format="PNG")
    return buf.getvalue()


def frame_strip_for(
    frames: Sequence[Frame], per_image: Sequence[dict[str, Any]], max_frames: int = 6
) -> bytes | None:
    """:func:`frame_strip_png` of one well's frames (image read from disk, labels from the
    ``labels`` column of ``per_image``); None when none can be read."""
    rows = {r["file"]: r for r in per_image}
    items = []
    for f in strip_frames(frames, max_frames):
        r = rows.get(str(f.path))
        if r is None or not r["labels"]:
            continue
        try:
            image, labels = read_image(f.path), read_labels(r["labels"])
        except LivecellError:
            continue
        if image.shape != labels.shape:
            continue
        where = " ".join(
            x for x in (f"field {f.field}" if f.field else "", f"crop {f.crop}" if f.crop else "") if x
        )
        title = f"{_fmt_time(f.time_h)} ({f.time_h:g} h){' · ' + where if where else ''} · {r['count']} cells · {r['confluence']:.0f}%"
        items.append((title, image, labels))
    return frame_strip_png(items) if items else None


def _fmt_time(t_h: float) -> str:
    d, rem = divmod(t_h, 24.0)
    return f"{int(d):02d}d{rem:04.1f}h" if rem % 1 else f"{int(d):02d}d{int(rem):02d}h"


#: how many frames "check these frames" lists at most
CHECK_FRAMES = 5


def frames_to_check(per_image: Sequence[dict[str, Any]], n: int = CHECK_FRAMES) -> list[dict[str, Any]]:
    """The ``n`` per-image rows with the lowest quality estimate, worst first (none when no
    frame has one): the segmentations to look at before trusting the growth figures."""
    rated = [r for r in per_image if r.get("quality") is not None]
    return sorted(rated, key=lambda r: (r["quality"], r["file"]))[:n]


# --------------------------------------------------------------------------------------------------
# index.html
# --------------------------------------------------------------------------------------------------
def _num(v: Any, nd: int = 1) -> str:
    """A table cell: a float with ``nd`` decimals (NaN -> ``–``, infinities -> ``∞``), else escaped text."""
    if isinstance(v, float):
        return "∞" if math.isinf(v) else format_number(v, nd)
    return html.escape(str(v))


def _header_html(result: TimecourseResult) -> list[str]:
    """The page head, the title and the run's summary; the skipped files."""
    e = html.escape
    s = result.settings
    n_wells = len({(r["cell_type"], r["well"]) for r in result.per_image})
    src = (
        f"label images from <code>{e(str(s['labels_dir']))}</code>"
        if s.get("labels_dir")
        else f"segmented with <code>{e(str(s.get('model')))}</code> (the <code>livecell-seg predict</code> code path)"
    )
    px = s.get("pixel_size_um")
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<title>livecell-seg time course</title>",
        f"<style>{CSS}</style></head><body>",
        "<h1>Time course: confluence, cell counts and growth</h1>",
        f"<p>{len(result.per_image)} image(s) of {n_wells} well(s), {src}. "
        f"Pixel size {px if px else '–'} µm. Made by <code>livecell-seg timecourse</code> in "
        f"{result.timings.get('total_s', math.nan):.1f} s. Tables: "
        "<a href='per_image.csv'>per_image.csv</a>, <a href='per_well_time.csv'>per_well_time.csv</a>, "
        "<a href='growth.csv'>growth.csv</a>.</p>",
    ]
    if result.skipped:
        items = "".join(f"<li>{e(m)}</li>" for _p, m in result.skipped[:50])
        more = f"<li>… and {len(result.skipped) - 50} more</li>" if len(result.skipped) > 50 else ""
        parts.append(
            f"<p class='warn'>{len(result.skipped)} file(s) skipped:</p><ul class='warn'>{items}{more}</ul>"
        )
    check = frames_to_check(result.per_image)
    if check:
        items = "".join(
            f"<li><code>{e(Path(r['file']).name)}</code>: quality {r['quality']:.2f}, {r['count']} cells</li>"
            for r in check
        )
        parts.append(
            "<h2>Check these frames</h2><p>The segmentations with the lowest quality estimate "
            "(<code>--quality</code>: agreement with a segmentation of the mirrored image, 0-1), "
            f"worst first; look at their outlines before trusting the growth figures:</p><ol>{items}</ol>"
        )
    return parts


def _growth_html(result: TimecourseResult) -> list[str]:
    """The growth table (one row per well and metric) and how the fits were made."""
    e = html.escape
    fit = result.settings.get("fit", {})
    rows = []
    for g in result.growth:
        rows.append(
            [
                e(well_label(g["cell_type"], g["well"])),
                e(g["metric"]),
                e(format_doubling_time(g)),
                _num(g["rate_per_h"], 4),
                _num(g["r2"], 3),
                f"{g['n_used']} of {g['n_points']}",
                f"{_num(g['t_start_h'])}–{_num(g['t_end_h'])}" if g["n_used"] else "–",
                "yes" if g["meaningful"] else f"<span class='warn'>no: {e(g['reason'])}</span>",
            ]
        )
    header = ["well", "metric", "doubling time [95% CI]", "rate (1/h)", "R²", "time points used", "hours"]
    rule = (
        "the three-phase linear model (lag, exponential, plateau; Buchanan et al. 1997) fitted to "
        "ln(value) with breakpoints at observed time points, the variant with or without lag and "
        "plateau chosen by BIC; at least 3 time points"
        if not fit.get("fit_range_h")
        else f"the time points from {fit['fit_range_h'][0]:g} to {fit['fit_range_h'][1]:g} h (given)"
    )
    return [
        "<h2>Growth per well</h2>",
        html_table([*header, "meaningful"], rows),
        "<p class='note'>Fit: ln(mean over fields and crops) against time, ordinary least squares over "
        f"the exponential phase, 95% CI from Student's t on the slope. Exponential phase: {e(rule)}. "
        "Not meaningful: fewer than 3 time points with cells, no increase, a rate whose CI includes 0, "
        f"or R² below {fit.get('min_r2')}.</p>",
    ]


def _figures_html(figures: dict[str, bytes], strips: dict[str, bytes]) -> list[str]:
    """The plots, then the frame strips of each well."""
    e = html.escape
    titles = {
        "growth_curves": "Growth curves (relative to the first time point)",
        "absolute": "Counts and confluence (mean ± SD over fields and crops)",
        "doubling_time_plate": "Doubling times on the plate",
    }
    parts = []
    for key, title in titles.items():
        if key in figures:
            parts.append(f"<h2>{e(title)}</h2>{img_tag(figures[key], title)}")
    if strips:
        parts.append("<h2>Segmentations over time</h2>")
        for name, png in strips.items():
            parts.append(f"<h3>{e(name)}</h3>{img_tag(png, name)}")
    return parts


def _per_well_time_html(result: TimecourseResult) -> list[str]:
    """The table of every well and time point (folded)."""
    header = [
        "well",
        "time (h)",
        "images",
        "count",
        "SD",
        "confluence (%)",
        "SD",
        "cells/mm²",
        "median area (µm²)",
    ]
    rows = [
        [
            html.escape(well_label(r["cell_type"], r["well"])),
            _num(r["time_h"]),
            r["n_images"],
            _num(r["count_mean"]),
            _num(r["count_sd"]),
            _num(r["confluence_mean"], 2),
            _num(r["confluence_sd"], 2),
            _num(r["cells_per_mm2_mean"], 0),
            _num(r["median_area_um2_mean"], 0),
        ]
        for r in result.per_well_time
    ]
    return ["<h2>Per well and time point</h2><details><summary>table</summary>", html_table(header, rows)]


def render_html(result: TimecourseResult, figures: dict[str, bytes], strips: dict[str, bytes]) -> str:
    """The report page: settings, skipped files, growth table, plots, per-time table, frames."""
    parts = [
        *_header_html(result),
        *_growth_html(result),
        *_figures_html(figures, strips),
        *_per_well_time_html(result),
        "</details></body></html>",
    ]
    return "\n".join(parts)


def write_report(result: TimecourseResult) -> dict[str, Path]:
    """Write ``plots/*.png`` and ``index.html`` into ``result.out_dir``; returns ``{name: path}``."""
    out = Path(result.out_dir)
    figures: dict[str, bytes] = {
        "growth_curves": growth_curves_png(result.per_well_time, result.growth),
        "absolute": absolute_png(result.per_well_time, result.settings.get("pixel_size_um")),
    }
    heat = plate_heatmap_png(result.growth)
    if heat is not None:
        figures["doubling_time_plate"] = heat
    files: dict[str, Path] = {}
    for name, png in figures.items():
        p = out / "plots" / f"{name}.png"
        with atomic_path(p) as tmp:
            tmp.write_bytes(png)
        files[name] = p
    by_well: dict[str, list[Frame]] = defaultdict(list)
    for f in result.frames:
        by_well[well_label(f.cell_type, f.well)].append(f)
    strips: dict[str, bytes] = {}
    for name, frames in list(by_well.items())[:MAX_STRIPS]:
        png = frame_strip_for(frames, result.per_image)
        if png is not None:
            strips[name] = png
            p = out / "plots" / f"frames_{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)}.png"
            with atomic_path(p) as tmp:
                tmp.write_bytes(png)
            files[f"frames {name}"] = p
    page = out / "index.html"
    with atomic_path(page) as tmp:
        tmp.write_text(render_html(result, figures, strips), encoding="utf-8")
    files["index"] = page
    return files
