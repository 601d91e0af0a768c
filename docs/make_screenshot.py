"""Screenshot of the web app with a segmented sample image -> ``docs/app_screenshot.png``.

    python docs/make_screenshot.py [--model DIR] [--sample FILE_NAME] [--out PATH]

Starts ``livecell-seg app`` on a free port (default model: the bundled one), opens the page in
headless Chromium (Debian: ``apt-get install -y chromium``) with ``?sample=<name>`` so the page
segments that sample without clicks, waits over the DevTools protocol until the page has finished
(downloads rendered, every image loaded, no "Running" indicator), and saves a PNG.

``chromium --screenshot --virtual-time-budget=...`` alone is not enough: virtual time does not wait
for Streamlit's websocket, so it captures an empty skeleton. The DevTools client is the
``websockets`` package that Streamlit already depends on.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "docs" / "app_screenshot.png"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--remote-debugging-port=0",
]
#: JavaScript: true once the page shows its last element and nothing is still loading or running
READY_JS = """
(() => {
  const text = document.body ? document.body.innerText : "";
  const imgs = [...document.images];
  const running = document.querySelector('[data-testid="stStatusWidget"]');
  const spinner = document.querySelector('[data-testid="stSpinner"]');
  return text.includes("ImageJ ROIs") && imgs.length >= 4
    && imgs.every(i => i.complete && i.naturalWidth > 0) && !spinner
    && !(running && running.innerText.includes("Running"));
})()
"""


def find_chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    sys.exit("make_screenshot: no chromium on PATH (Debian/Ubuntu: apt-get install -y chromium)")


class DevTools:
    """A minimal Chrome DevTools Protocol client over one page target's websocket."""

    def __init__(self, ws) -> None:  # noqa: ANN001 - a websockets.sync ClientConnection
        self.ws = ws
        self.next_id = 0

    def call(self, method: str, **params: object) -> dict:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv(timeout=60))
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})


def _devtools_port(profile: Path, proc: subprocess.Popen, timeout: float = 30.0) -> int:
    """Chromium writes its DevTools port to ``<profile>/DevToolsActivePort``."""
    f = profile / "DevToolsActivePort"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"make_screenshot: chromium exited early (code {proc.returncode})")
        if f.is_file() and f.read_text().strip():
            return int(f.read_text().split()[0])
        time.sleep(0.2)
    sys.exit("make_screenshot: chromium did not open its DevTools port")


def capture(url: str, out: Path, width: int, height: int, timeout: float) -> float:
    """Load ``url`` in headless Chromium, wait until the page is ready, save a PNG; return seconds waited."""
    profile = Path(tempfile.mkdtemp(prefix="livecell-chromium-"))
    proc = subprocess.Popen(
        [
            find_chromium(),
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            f"--window-size={width},{height}",
            url,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        port = _devtools_port(profile, proc)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
            pages = [t for t in json.load(r) if t.get("type") == "page"]
        from websockets.sync.client import connect

        with connect(pages[0]["webSocketDebuggerUrl"], max_size=64 * 2**20, open_timeout=20) as ws:
            cdp = DevTools(ws)
            cdp.call(
                "Emulation.setDeviceMetricsOverride",
                width=width,
                height=height,
                deviceScaleFactor=1,
                mobile=False,
            )
            t0, ready_since = time.monotonic(), None
            while True:
                res = cdp.call("Runtime.evaluate", expression=READY_JS, returnByValue=True)
                ready = bool(res.get("result", {}).get("value"))
                now = time.monotonic()
                if ready and ready_since is None:
                    ready_since = now
                elif not ready:
                    ready_since = None
                if ready_since is not None and now - ready_since >= 2.0:  # stable for 2 s
                    break
                if now - t0 > timeout:
                    sys.exit(f"make_screenshot: the page was not ready after {timeout:.0f} s")
                time.sleep(0.5)
            waited = time.monotonic() - t0
            shot = cdp.call("Page.captureScreenshot", format="png")
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.part")
        tmp.write_bytes(base64.b64decode(shot["data"]))
        os.replace(tmp, out)
        return waited
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(profile, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    from livecell_seg.app import logic, start_server, stop_server, wait_healthy

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", metavar="DIR", help="model folder (default: the bundled model)")
    ap.add_argument("--sample", help="sample image file name (default: the first bundled sample)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"PNG to write (default {DEFAULT_OUT})")
    ap.add_argument("--width", type=int, default=1400)
    ap.add_argument("--height", type=int, default=1500)
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the page")
    args = ap.parse_args(argv)

    try:
        model_dir = logic.resolve_model_dir(args.model)
    except Exception as e:  # noqa: BLE001
        sys.exit(f"make_screenshot: {e}")
    samples = [p.name for p in logic.sample_images()]
    sample = args.sample or samples[0]
    if sample not in samples:
        sys.exit(f"make_screenshot: unknown sample {sample!r}; choose one of {', '.join(samples)}")
    # no --model: the page's own default ("Bundled default"), as a user starting `livecell-seg app` sees it
    proc, url = start_server(0, args.model, quiet=True)
    try:
        if not wait_healthy(url, timeout=120, proc=proc):
            sys.exit("make_screenshot: the app did not start")
        waited = capture(
            f"{url}/?{urllib.parse.urlencode({'sample': sample})}",
            args.out,
            args.width,
            args.height,
            args.timeout,
        )
    finally:
        stop_server(proc)
    print(f"wrote {args.out} ({sample}, model {model_dir}; page ready after {waited:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
