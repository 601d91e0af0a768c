"""Screenshot of the napari plugin on a bundled sample -> ``docs/napari_screenshot.png``.

    xvfb-run -a -s "-screen 0 1600x1000x24" python docs/make_napari_screenshot.py [--sample KEY] [--out PATH]

Does what a user does: opens napari, File > Open Sample > livecell-seg, Plugins > livecell-seg >
Segment cells, presses Segment, waits for the worker thread, and saves the whole window
(``viewer.screenshot(canvas_only=False)``). napari draws with OpenGL, which Qt's ``offscreen``
platform lacks, hence Xvfb (Debian: ``apt-get install -y xvfb libxcb-icccm4 libxcb-keysyms1``
for PyQt6). Prints the cell count. ``tests/test_napari.py`` runs it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "docs" / "napari_screenshot.png"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sample", default="bt474_b3", help="sample key (default: bt474_b3)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all)")
    ap.add_argument("--timeout", type=float, default=240.0, help="seconds to wait for the segmentation")
    args = ap.parse_args(argv)

    import napari
    from qtpy.QtWidgets import QApplication

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    viewer = napari.Viewer(title="livecell-seg in napari", show=True)
    viewer.window.resize(1600, 900)
    [image, _annotations] = viewer.open_sample("livecell-seg", args.sample)
    _dock, widget = viewer.window.add_plugin_dock_widget("livecell-seg", "Segment cells")
    viewer.layers.selection.active = image
    widget.run()
    t0 = time.perf_counter()
    while widget.busy:
        QApplication.processEvents()
        time.sleep(0.02)
        if time.perf_counter() - t0 > args.timeout:
            print(f"timed out after {args.timeout:.0f} s: {widget.status.value}", file=sys.stderr)
            return 1
    cells = viewer.layers[f"{image.name} cells"]
    cells.opacity = 0.45
    viewer.layers.selection.active = cells
    viewer.reset_view()
    for _ in range(20):  # let Qt lay out and paint
        QApplication.processEvents()
        time.sleep(0.02)
    shot = viewer.screenshot(canvas_only=False, flash=False)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    from PIL import Image

    Image.fromarray(shot).save(args.out)
    print(f"{widget.status.value} on {image.name}; {time.perf_counter() - t0:.1f} s; wrote {args.out}")
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
