"""What the HTML reports share: PNG figures embedded as base64, tables, the style sheet, numbers.

Used by the EDA report (:mod:`livecell_seg.data.eda`), the evaluation report
(:mod:`livecell_seg.evaluation.evaluate`), the time-course report (:mod:`livecell_seg.timecourse.report`)
and the demo's tables (:mod:`livecell_seg.demo_pipeline`). Pure Python; matplotlib is imported only to close a
pyplot figure (:func:`figure_png` with ``close=True``).
"""

from __future__ import annotations

import base64
import html
import io
import math
from typing import Any

#: the style sheet of the EDA and time-course pages
CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1180px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.6em}h2{font-size:1.25em;margin-top:1.8em;border-bottom:1px solid #ddd;padding-bottom:.2em}
table{border-collapse:collapse;margin:.6em 0;font-size:.88em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}th{background:#f3f3f3}
td:first-child,th:first-child{text-align:left}
img{max-width:100%;height:auto;display:block;margin:.5em 0}
.note{color:#555;font-size:.9em}.warn{color:#a94400}
code{background:#f3f3f3;padding:0 .2em}
"""


def figure_png(fig: Any, dpi: int, *, tight: bool = False, close: bool = False) -> bytes:
    """A matplotlib figure as PNG bytes at ``dpi``; ``tight``: cropped to its content
    (``bbox_inches="tight"``); ``close``: the figure is closed in pyplot afterwards (figures made
    with ``pyplot``; a plain ``matplotlib.figure.Figure`` needs no closing)."""
    buf = io.BytesIO()
    if tight:
        fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    else:
        fig.savefig(buf, format="png", dpi=dpi)
    if close:
        import matplotlib.pyplot as plt

        plt.close(fig)
    return buf.getvalue()


def png_base64(png: bytes) -> str:
    """PNG bytes as base64 text (for a ``data:`` URL)."""
    return base64.b64encode(png).decode("ascii")


def img_tag(png: bytes, alt: str | None = None, *, self_closing: bool = False) -> str:
    """``<img>`` with the PNG embedded as a ``data:`` URL; ``alt`` (escaped) when given;
    ``self_closing``: written ``<img .../>``."""
    alt_attr = "" if alt is None else f'alt="{html.escape(alt)}" '
    end = "/>" if self_closing else ">"
    return f'<img {alt_attr}src="data:image/png;base64,{png_base64(png)}"{end}'


def html_table(header: list[str], rows: list[list[Any]], *, escape_cells: bool = False) -> str:
    """A ``<table>`` with one header row (escaped). Cells are written as given (they may hold HTML:
    the caller escapes text), or escaped with ``escape_cells``."""
    th = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)

    def cell(c: Any) -> str:
        return html.escape(str(c)) if escape_cells else f"{c}"

    body = "".join("<tr>" + "".join(f"<td>{cell(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def format_number(v: float, nd: int = 1) -> str:
    """``1,234.5`` (``nd`` decimals, thousands separated); NaN -> ``–`` (a dash)."""
    return "–" if v != v else f"{v:,.{nd}f}"


def format_metric(v: Any, pct: bool, *, pct_digits: int = 2, dash_nonfinite: bool = True) -> str:
    """A metric in a table: AP-like percentages (``pct``) with ``pct_digits`` decimals, fractions
    with 3; None -> ``-``, and NaN or infinity too with ``dash_nonfinite``."""
    if v is None or (dash_nonfinite and isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return f"{v:.{pct_digits}f}" if pct else f"{v:.3f}"
