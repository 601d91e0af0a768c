"""The Streamlit web app: ``livecell-seg app`` starts it on 127.0.0.1.

:func:`launch` runs ``streamlit run`` on :data:`SCRIPT` (the page, ``streamlit_app.py``) in a child
process; the page logic lives in :mod:`livecell_seg.interactive` (pure, testable helpers).
Nothing heavy is imported here.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from ..errors import LivecellError

#: largest upload the page accepts, in MB (Streamlit's ``server.maxUploadSize``, set explicitly)
MAX_UPLOAD_MB = 200

#: the Streamlit page script
SCRIPT = Path(__file__).resolve().parent / "streamlit_app.py"
#: environment variable through which the launcher hands the model folder to the page
MODEL_ENV = "LIVECELL_SEG_APP_MODEL"
HOST = "127.0.0.1"


def free_port(host: str = HOST) -> int:
    """A TCP port on ``host`` that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _port_is_free(port: int, host: str = HOST) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def streamlit_command(port: int, host: str = HOST) -> list[str]:
    """The ``streamlit run`` command line of the app (headless, local only, no telemetry)."""
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(SCRIPT),
        "--server.headless=true",
        f"--server.address={host}",
        f"--server.port={port}",
        "--server.fileWatcherType=none",
        "--server.runOnSave=false",
        "--browser.gatherUsageStats=false",
        f"--server.maxUploadSize={MAX_UPLOAD_MB}",
        f"--browser.serverAddress={host}",
        f"--browser.serverPort={port}",
        "--theme.base=light",
        "--client.toolbarMode=minimal",
    ]


def wait_healthy(url: str, timeout: float = 60.0, proc: subprocess.Popen | None = None) -> bool:
    """Poll ``url``/_stcore/health until it answers ``ok`` (False on timeout or if ``proc`` exits)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.read().decode().strip() == "ok":
                    return True
        except OSError:
            pass
        time.sleep(0.3)
    return False


def start_server(
    port: int = 8501, model_dir: str | os.PathLike[str] | None = None, *, quiet: bool = False
) -> tuple[subprocess.Popen, str]:
    """Start the Streamlit server in a child process; return ``(process, url)`` without waiting.

    ``port=0`` picks a free port. ``model_dir`` (a model folder; default: the bundled model) is
    checked first and handed to the page through the :data:`MODEL_ENV` environment variable.
    Raises :class:`LivecellError` for a busy port or a bad model folder.
    """
    env = dict(os.environ)
    if model_dir is not None:
        from ..model.folder import read_model_config

        path = Path(model_dir).expanduser().resolve()
        read_model_config(path)  # one-line InputFileError for a folder that is not a model folder
        env[MODEL_ENV] = str(path)
    else:
        env.pop(MODEL_ENV, None)
    if port == 0:
        port = free_port()
    elif not 0 < port < 65536:
        raise LivecellError(f"invalid port {port}")
    elif not _port_is_free(port):
        raise LivecellError(f"port {port} on {HOST} is already in use (choose another with --port)")
    out = subprocess.DEVNULL if quiet else None
    proc = subprocess.Popen(streamlit_command(port), env=env, stdout=out, stderr=out)
    return proc, f"http://{HOST}:{port}"


def stop_server(proc: subprocess.Popen, timeout: float = 10.0) -> int:
    """Terminate the server process cleanly (SIGTERM, then SIGKILL after ``timeout``)."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return int(proc.returncode)


def launch(
    port: int = 8501, model_dir: str | os.PathLike[str] | None = None, *, open_browser: bool = True
) -> int:
    """Serve the app on ``http://127.0.0.1:<port>`` until interrupted; return the exit code.

    SIGTERM (exit code 0) and Ctrl+C (130) stop the Streamlit child process too. With ``open_browser`` the page is
    opened in the default browser once the server answers.
    """
    proc, url = start_server(port, model_dir)
    print(f"livecell-seg app: serving on {url}  (Ctrl+C to stop)", flush=True)

    stopped: list[int] = []

    def _forward(signum: int, _frame: object) -> None:
        # no blocking wait here: the main thread is inside proc.wait() and holds its lock
        stopped.append(signum)
        if proc.poll() is None:
            proc.terminate()

            def _kill_if_hung() -> None:
                if proc.poll() is None:
                    proc.kill()

            timer = threading.Timer(10.0, _kill_if_hung)
            timer.daemon = True
            timer.start()

    old = signal.signal(signal.SIGTERM, _forward)
    if open_browser:

        def _open() -> None:
            if wait_healthy(url, proc=proc):
                import webbrowser

                webbrowser.open(url)

        threading.Thread(target=_open, daemon=True).start()
    try:
        code = int(proc.wait())
        return 0 if stopped else code
    except KeyboardInterrupt:
        stop_server(proc)
        return 130
    finally:
        signal.signal(signal.SIGTERM, old)
