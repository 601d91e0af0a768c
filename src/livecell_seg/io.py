"""Image and label I/O shared by every stage: robust reading, normalization, atomic writes.

Pure numpy/tifffile/Pillow; no torch.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import signal
import socket
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputFileError, LivecellError, OutputFileError

IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg")
#: TIFF "Software" tag of the label images we write: how readers (the napari plugin) tell them
#: from microscopy images
LABELS_SOFTWARE = "livecell-seg labels"

#: environment variable that sets the largest image (in pixels) any command accepts
MAX_PIXELS_ENV = "LIVECELL_MAX_PIXELS"
#: default limit: 100 megapixels (10,000 x 10,000); a LIVECell image has 0.37
DEFAULT_MAX_PIXELS = 100_000_000

_UMASK = os.umask(0)
os.umask(_UMASK)
#: this machine, as written into temporary file names (a stale one is only swept on its own host)
_HOST = re.sub(r"[^A-Za-z0-9]", "_", socket.gethostname())[:40] or "host"
#: ``.<final name>.<host>-<pid>-<random>.part``: what :func:`atomic_path` writes before the rename
_PART_RE = re.compile(r"^\.(?P<name>.+)\.(?P<host>[A-Za-z0-9_]+)-(?P<pid>\d+)-[A-Za-z0-9_]+\.part$")


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not every file system can open or sync a directory
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


#: errno -> how a message says it (the OS's own strerror otherwise)
_OS_ERRORS = {
    errno.ENOSPC: "no space left on device",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENAMETOOLONG: "file name too long for the file system",
    errno.EDQUOT: "disk quota exceeded",
    errno.EISDIR: "is a folder",
    errno.ENOTDIR: "a parent is not a folder",
}


def describe_os_error(e: OSError) -> str:
    """One short lower-case phrase for an OSError (``no space left on device``, ``read-only file
    system``, ...), without the file name (the caller names the file)."""
    if e.errno in _OS_ERRORS:
        return _OS_ERRORS[e.errno]
    text = (e.strerror or str(e) or type(e).__name__).splitlines()[0]
    return text[:1].lower() + text[1:]


def _part_key(name: str) -> str:
    """The part of a temporary file's name that stands for its final ``name``: the name itself, or
    for a long one a shortened name with a hash, so the temporary name stays within the file
    system's 255 bytes (:func:`part_key`)."""
    raw = os.fsencode(name)
    if len(raw) <= 150:
        return name
    digest = hashlib.sha1(raw).hexdigest()[:12]
    head = raw[:120].decode("utf-8", "ignore")
    return f"{head}~{digest}"


def part_key(final_name: str) -> str:
    """What :func:`part_file_target` returns for the temporary files written for ``final_name``."""
    return _part_key(final_name)


def _output_error(final: Path, e: OSError) -> OutputFileError:
    what = describe_os_error(e)
    if e.errno is None:  # e.g. numpy's "N requested and M written": a short write, a full disk?
        import shutil

        with contextlib.suppress(OSError):
            if shutil.disk_usage(final.parent).free < (1 << 20):
                what = f"no space left on device: {what}"
    return OutputFileError(final, f"cannot be written ({what})")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` only on success.

    Nothing is ever left half-written under the final name: the data are flushed to disk
    (``fsync``) before the rename and the folder after it, so a power cut leaves either the old file
    or the complete new one. The temporary file is removed on any error or interruption; one left by
    a killed process (``SIGKILL``) is removed by :func:`sweep_stale_parts` on the next run.
    A write that fails in the file system (full, read-only, no permission, ``path`` is a folder)
    raises a one-line :class:`~livecell_seg.errors.OutputFileError` naming ``path``.
    """
    final = Path(path)
    if final.is_dir():
        raise OutputFileError(final, "is a folder; give the name of a file to write")
    tmp_path: Path | None = None
    try:
        # Ctrl+C and SIGTERM wait while the file is created and named, so an interruption never
        # leaves a temporary file that the clean-up below does not know about.
        with _interrupts_deferred():
            try:
                final.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(
                    prefix=f".{_part_key(final.name)}.{_HOST}-{os.getpid()}-",
                    suffix=".part",
                    dir=final.parent,
                )
                os.close(fd)
            except OSError as e:
                raise _output_error(final, e) from None
            tmp_path = Path(tmp)
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; outputs get the usual mode
        fd = os.open(tmp_path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp_path, final)
        _fsync_dir(final.parent)
    except OSError as e:
        if tmp_path is None:
            raise
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        if e.filename not in (None, str(tmp_path), str(final)):  # about some other file (an input)
            raise
        raise _output_error(final, e) from None
    except BaseException:
        if tmp_path is not None:
            with contextlib.suppress(OSError):
                tmp_path.unlink()
        raise


@contextlib.contextmanager
def _interrupts_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back while the body runs; one that arrives meanwhile is handled, by
    the handler that was in place, when the body ends.

    In the main thread the handlers are swapped for a recorder (a signal can be delivered to any
    thread of the process, so blocking it in this thread alone would not hold it back once other
    threads exist); elsewhere, where handlers cannot be changed, the signals are blocked in this
    thread.
    """
    import threading

    if threading.current_thread() is not threading.main_thread():
        mask = getattr(signal, "pthread_sigmask", None)
        if mask is None:  # not on this platform
            yield
            return
        old_mask = mask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        try:
            yield
        finally:
            mask(signal.SIG_SETMASK, old_mask)
        return
    arrived: list[int] = []
    old = {
        sig: signal.signal(sig, lambda n, _frame: arrived.append(n))
        for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
        for sig in dict.fromkeys(arrived):
            handler = old[sig]
            if callable(handler):
                handler(sig, None)  # e.g. KeyboardInterrupt, or the CLI's Terminated
            elif handler == signal.SIG_DFL:
                signal.raise_signal(sig)


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike[str], what: str = "livecell-seg") -> Iterator[Path]:
    """Hold an exclusive lock on the output folder ``folder`` (created if missing) while the body runs.

    A second command writing into the same folder at the same time would overwrite the first
    one's results and leave its records (``predict_names.json``) pointing at files that do not
    exist: it is refused at once with a one-line :class:`LivecellError`. The lock is ``flock`` on
    the folder itself (nothing is written into it; released when the process ends, even when it
    is killed). Where the file system offers no such lock (some network file systems), the
    command runs unlocked.
    """
    import fcntl

    d = Path(folder)
    if d.exists() and not d.is_dir():
        raise OutputFileError(d, "exists and is not a folder")
    try:
        d.mkdir(parents=True, exist_ok=True)
        fd = os.open(d, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError as e:
        raise _output_error(d, e) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise LivecellError(
                    f"{d}: another {what} run is writing into this folder now; wait for it to "
                    "finish or choose another output folder"
                ) from None
            # no flock here (e.g. some network file systems): run without the lock
        yield d
    finally:
        os.close(fd)  # releases the lock


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. PermissionError: the process exists (another user's)
        return True
    return True


def sweep_stale_parts(folder: str | os.PathLike[str], recursive: bool = True) -> list[Path]:
    """Delete temporary ``.part`` files that :func:`atomic_path` left behind in a killed process.

    Only files written on this host by a process that no longer runs are removed (a concurrent
    run's files and other programs' ``.part`` files, such as resumable downloads, are kept).
    Returns the removed paths.
    """
    root = Path(folder)
    if not root.is_dir():
        return []
    removed = []
    for q in root.rglob(".*.part") if recursive else root.glob(".*.part"):
        m = _PART_RE.match(q.name)
        if m is None or m["host"] != _HOST or _pid_alive(int(m["pid"])) or not q.is_file():
            continue
        with contextlib.suppress(OSError):
            q.unlink()
            removed.append(q)
    return removed


def part_file_target(name: str) -> str | None:
    """The final file name that the temporary file ``name`` of :func:`atomic_path` was written
    for (``.x.tif.<host>-<pid>-<random>.part`` -> ``x.tif``; for a name too long to fit, its
    :func:`part_key`); None for any other name."""
    m = _PART_RE.match(name)
    return None if m is None else m["name"]


def positive_env_int(name: str, default: int, unit: str) -> int:
    """A positive integer from environment variable ``name`` (``4e8`` accepted), else ``default``.

    Raises a one-line :class:`LivecellError` for anything else.
    """

    v = os.environ.get(name, "").strip()
    if not v:
        return default
    try:
        n = int(float(v))
    except (ValueError, OverflowError):
        n = 0
    if n < 1:
        raise LivecellError(f"${name}={v!r} is not a positive number of {unit}")
    return n


def max_image_pixels() -> int:
    """The largest image, in pixels, that the commands accept: ``$LIVECELL_MAX_PIXELS`` or 100 million."""
    return positive_env_int(MAX_PIXELS_ENV, DEFAULT_MAX_PIXELS, "pixels")


def check_image_size(
    path: object,
    height: int,
    width: int,
    what: str = "image",
    limit: int | None = None,
    hint: str | None = None,
) -> None:
    """Raise a one-line :class:`InputFileError` when ``height x width`` exceeds ``limit``
    (default :func:`max_image_pixels`); ``hint`` replaces the advice at the end of the message."""
    limit = max_image_pixels() if limit is None else int(limit)
    if int(height) * int(width) > limit:
        raise InputFileError(
            path,
            f"{what} is {int(width)}x{int(height)} pixels ({int(height) * int(width) / 1e6:,.1f} megapixels), "
            f"above the limit of {limit / 1e6:,.1f} megapixels ({hint or f'set ${MAX_PIXELS_ENV} to raise it'})",
        )


_FILE_KINDS = (
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def check_input_file(path: str | os.PathLike[str], what: str = "file") -> Path:
    """``path`` as a Path if it is a regular file that exists; else a one-line
    :class:`InputFileError` that says what it is instead: not found, a broken link, a folder, a
    named pipe, a device (``/dev/zero``), or a file this user cannot read."""
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        if p.is_symlink():
            raise InputFileError(p, f"is a broken link (to {os.readlink(p)})") from None
        raise InputFileError(p, f"{what} not found") from None
    except OSError as e:
        raise InputFileError(p, f"cannot be read ({describe_os_error(e)})") from None
    if stat.S_ISDIR(st.st_mode):
        raise InputFileError(p, f"is a folder, expected a {what}")
    if not stat.S_ISREG(st.st_mode):
        kind = next((k for test, k in _FILE_KINDS if test(st.st_mode)), "not a regular file")
        link = f" (a link to {os.readlink(p)})" if p.is_symlink() else ""
        raise InputFileError(p, f"is {kind}{link}, not a regular {what}")
    return p


def read_json(path: str | os.PathLike[str]) -> Any:
    """Parse a JSON file; a missing, unreadable or invalid file raises a one-line InputFileError."""
    p = check_input_file(path)
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise InputFileError(p, f"invalid JSON ({e.msg} at line {e.lineno})") from None
    except RecursionError:
        raise InputFileError(p, "JSON nested too deeply (not a settings or annotation file)") from None
    except (UnicodeDecodeError, OSError) as e:
        raise InputFileError(p, f"cannot be read as JSON ({type(e).__name__})") from None


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` atomically (a failure names ``path``: :func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json_atomic(path: str | os.PathLike[str], obj: Any, indent: int | None = 2) -> None:
    """Write ``obj`` as JSON to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=indent) + "\n")


#: private TIFF tag of a label image written by ``predict``: the settings that made it (JSON), so
#: that ``--resume`` redoes an image made with other settings instead of keeping it silently
LABELS_RECORD_TAG = 65421


def write_tiff_atomic(
    path: str | os.PathLike[str],
    array: np.ndarray,
    compression: str = "zlib",
    software: str | None = None,
    record: dict[str, Any] | None = None,
) -> None:
    """Write a 2-D array as a (compressed) TIFF atomically (``software``: the TIFF Software tag;
    ``record``: JSON kept in the private tag :data:`LABELS_RECORD_TAG`)."""
    import tifffile

    extratags = []
    if record is not None:
        extratags.append((LABELS_RECORD_TAG, "s", 0, json.dumps(record, sort_keys=True), True))
    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, array, compression=compression, software=software, extratags=extratags)


def write_labels(
    path: str | os.PathLike[str], labels: np.ndarray, record: dict[str, Any] | None = None
) -> None:
    """Write an instance label image as uint16 TIFF (0 = background), atomically.

    Its TIFF Software tag is :data:`LABELS_SOFTWARE` (:func:`is_labels_tiff`); ``record`` (the
    settings that made it, :func:`read_labels_record`) goes into a private tag. Raises ValueError
    when there are more than 65,535 instances.
    """
    labels = np.asarray(labels)
    if labels.size and int(labels.max()) > np.iinfo(np.uint16).max:
        raise ValueError(f"{path}: too many instances for uint16 ({int(labels.max())})")
    write_tiff_atomic(path, labels.astype(np.uint16, copy=False), software=LABELS_SOFTWARE, record=record)


def read_labels_record(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The settings record :func:`write_labels` kept in a label TIFF (None: none, or unreadable);
    its ``outcome`` (:func:`read_labels_outcome`) left out."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            tag = tif.pages[0].tags.get(LABELS_RECORD_TAG)
            d = json.loads(tag.value) if tag is not None else None
    except Exception:  # noqa: BLE001 - no record: the caller redoes the image
        return None
    if not isinstance(d, dict):
        return None
    d.pop(LABELS_OUTCOME_KEY, None)
    return d


#: key of a label TIFF's record that holds what came out (cells, zoom, quality), not settings
LABELS_OUTCOME_KEY = "outcome"


def read_labels_outcome(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """What ``predict`` recorded about a label image it wrote (``n_cells``, ``zoom``,
    ``quality``; ``io.write_labels(..., record={..., "outcome": {...}})``); None: none, or unreadable."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            tag = tif.pages[0].tags.get(LABELS_RECORD_TAG)
            d = json.loads(tag.value) if tag is not None else None
    except Exception:  # noqa: BLE001 - no record
        return None
    out = d.get(LABELS_OUTCOME_KEY) if isinstance(d, dict) else None
    return out if isinstance(out, dict) else None


def is_labels_tiff(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a label TIFF written by :func:`write_labels` (its Software tag)."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            return tif.pages[0].software == LABELS_SOFTWARE
    except Exception:  # noqa: BLE001 - not a (readable) TIFF
        return False


def _to_grey(arr: np.ndarray, path: Path) -> np.ndarray:
    """Grey from a 2-D image or one RGB(A) / grey+alpha image (samples first or last)."""
    while arr.ndim > 2 and arr.shape[0] == 1:  # a leading axis of one (e.g. 1 x H x W): dropped
        arr = arr[0]
    if arr.ndim == 2:
        return arr
    if arr.ndim == 3:
        # channels last (H, W, C) or channels first (C, H, W: a planar TIFF; stacks were refused)
        if arr.shape[-1] in (3, 4):
            rgb = arr[..., :3].astype(np.float32)
        elif arr.shape[0] in (3, 4):
            rgb = np.moveaxis(arr[:3], 0, -1).astype(np.float32)
        elif arr.shape[-1] == 2:  # grey + alpha
            return arr[..., 0]
        else:
            raise InputFileError(path, f"is a {_shape_text(arr.shape)} array, not a 2-D grey or RGB image")
        grey = rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        if np.issubdtype(arr.dtype, np.integer):
            return np.clip(np.rint(grey), 0, np.iinfo(arr.dtype).max).astype(arr.dtype)
        return grey
    raise InputFileError(path, f"is a {_shape_text(arr.shape)} array, not a 2-D grey or RGB image")


def _shape_text(shape: tuple[int, ...]) -> str:
    return "x".join(str(int(n)) for n in shape) if len(shape) else "0-dimensional"


def _stack_error(path: Path, n: int, page_shape: tuple[int, ...] | None = None) -> InputFileError:
    of = ""
    if page_shape is not None and len(page_shape) >= 2:
        of = f" of {int(page_shape[1])}x{int(page_shape[0])} pixels"  # width x height
    return InputFileError(path, f"holds {n} images{of} (a stack or time series); pass one 2-D image per file")


def _empty_error(path: Path, height: int, width: int) -> InputFileError:
    return InputFileError(path, f"image is {int(width)}x{int(height)} pixels: it holds no pixels")


#: EXIF/TIFF orientation -> how the stored pixels are turned to show the image upright
def _apply_orientation(arr: np.ndarray, orientation: int) -> np.ndarray:
    """Turn ``arr`` (H, W[, C]) as the EXIF/TIFF Orientation tag (1-8) says (cameras and phones
    store a rotated picture and set the tag instead of turning the pixels)."""
    o = int(orientation)
    if o == 2:
        return arr[:, ::-1]
    if o == 3:
        return arr[::-1, ::-1]
    if o == 4:
        return arr[::-1]
    if o == 5:
        return np.swapaxes(arr, 0, 1)
    if o == 6:
        return np.swapaxes(arr[::-1], 0, 1)  # 90 degrees clockwise
    if o == 7:
        return np.swapaxes(arr[::-1, ::-1], 0, 1)
    if o == 8:
        return np.swapaxes(arr, 0, 1)[::-1]  # 90 degrees counter-clockwise
    return arr


def _tiff_orientation(page: Any) -> int:
    """The TIFF Orientation tag (274) of a tifffile page; 1 (as stored) when absent or invalid."""
    tag = page.tags.get(274)
    try:
        o = int(tag.value) if tag is not None else 1
    except (TypeError, ValueError):
        return 1
    return o if 1 <= o <= 8 else 1


def _read_tiff_checked(p: Path, limit: int | None = None, hint: str | None = None) -> np.ndarray:
    """Read the one image of a TIFF after checking its header: a single page, within the size limit.
    The TIFF Orientation tag is applied."""
    import tifffile

    with tifffile.TiffFile(p) as tf:
        pages = [pg for pg in tf.pages if not getattr(pg, "is_reduced", False)]  # skip thumbnails
        if not pages:
            raise ValueError("no image in the file")
        page = pages[0]
        if len(pages) > 1:
            raise _stack_error(p, len(pages), (page.imagelength, page.imagewidth))
        check_image_size(p, page.imagelength, page.imagewidth, limit=limit, hint=hint)
        series = tf.series[0] if tf.series else None
        if series is not None and 0 in tuple(series.shape):
            raise InputFileError(p, f"holds a {_shape_text(series.shape)} array: no pixels")
        if min(page.imagelength, page.imagewidth) < 1:
            raise _empty_error(p, page.imagelength, page.imagewidth)
        if getattr(page, "imagedepth", 1) > 1:
            raise _stack_error(p, int(page.imagedepth), (page.imagelength, page.imagewidth))
        if series is not None:  # one page whose metadata says it holds frames (e.g. axes "ZYX")
            frames = [n for a, n in zip(series.axes, series.shape) if a in "ZTQIO" and n > 1]
            if frames:
                raise _stack_error(p, int(np.prod(frames)), (page.imagelength, page.imagewidth))
        arr = page.asarray()
        orientation = _tiff_orientation(page)
    return _apply_orientation(arr, orientation) if orientation != 1 else arr


def read_image(
    path: str | os.PathLike[str], *, max_pixels: int | None = None, limit_hint: str | None = None
) -> np.ndarray:
    """Read a microscopy image as a 2-D grey array in its stored dtype.

    TIFF (LZW included, via tifffile + imagecodecs, falling back to Pillow), PNG and JPEG;
    8-, 16-bit or float; RGB(A) is converted to grey. The header is checked before any pixel is
    decoded: a stack (several pages or frames) and an image above ``max_pixels`` (default
    :func:`max_image_pixels`) are refused. Raises :class:`InputFileError` with a one-line message for a missing, empty,
    unreadable, oversized or multi-frame file, and for float pixels that are NaN or infinite.
    """
    p = check_input_file(path)
    if p.stat().st_size == 0:
        raise InputFileError(p, "file is empty")
    arr: np.ndarray | None = None
    err: Exception | None = None
    if p.suffix.lower() in (".tif", ".tiff"):
        try:
            arr = _read_tiff_checked(p, max_pixels, limit_hint)
        except InputFileError:
            raise
        except Exception as e:  # noqa: BLE001 - try Pillow next
            err = e
    if arr is None:
        try:
            from PIL import Image

            limit = max_image_pixels() if max_pixels is None else int(max_pixels)
            # Pillow's own bomb check (a fixed 89/179 megapixels, raised while opening) would
            # pre-empt the configurable limit: check_image_size below decides instead
            Image.MAX_IMAGE_PIXELS = None
            with Image.open(p) as im:  # reads the header only
                check_image_size(p, im.height, im.width, limit=limit, hint=limit_hint)
                if min(im.height, im.width) < 1:
                    raise _empty_error(p, im.height, im.width)
                n = int(getattr(im, "n_frames", 1) or 1)
                if n > 1:
                    raise _stack_error(p, n, (im.height, im.width))
                orientation = int(im.getexif().get(0x0112, 1) or 1)  # EXIF Orientation
                im.load()
                if im.mode in ("I;16", "I;16B", "I;16L"):
                    arr = np.asarray(im, dtype=np.uint16)
                elif im.mode == "P":
                    arr = np.asarray(im.convert("L"))
                else:
                    arr = np.asarray(im)
            if orientation != 1:
                arr = np.ascontiguousarray(_apply_orientation(arr, orientation))
        except InputFileError:
            raise
        except Exception as e:  # noqa: BLE001
            err = err or e
            raise InputFileError(
                p,
                f"cannot read image ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else 'unknown'})",
            ) from None
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise InputFileError(p, f"unsupported pixel type {arr.dtype}")
    arr = _to_grey(np.asarray(arr), p)
    if arr.ndim != 2:
        raise InputFileError(p, f"is a {_shape_text(arr.shape)} array, not a 2-D image")
    if min(arr.shape) < 1:
        raise _empty_error(p, *arr.shape)
    if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
        raise InputFileError(p, "image has NaN or infinite pixel values")
    return arr


def read_labels(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an instance label image (2-D integer array). Raises InputFileError if unreadable."""
    p = check_input_file(path, "label image")
    try:
        arr = _read_tiff_checked(p) if p.suffix.lower() in (".tif", ".tiff") else None
    except InputFileError:
        raise
    except Exception as e:  # noqa: BLE001
        raise InputFileError(p, f"cannot read label image ({type(e).__name__})") from None
    if arr is None:
        arr = read_image(p)
    while arr.ndim > 2 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.integer):
        raise InputFileError(
            p, f"not a 2-D integer label image (a {_shape_text(arr.shape)} array of {arr.dtype})"
        )
    if arr.size and np.issubdtype(arr.dtype, np.signedinteger) and int(arr.min()) < 0:
        raise InputFileError(p, "label image has negative values (0 = background, cells 1..n)")
    return arr


def normalize_image(img: np.ndarray, low: float = 1.0, high: float = 99.8) -> np.ndarray:
    """Percentile-normalize a grey image to float32 (``low`` percentile -> 0, ``high`` -> 1).

    The same function is used in training and inference, so any bit depth works. It does not
    depend on the image's units: a float image multiplied by any positive factor (1e-9, 1e300)
    gives the same result (float images are divided by their largest magnitude first, in float64,
    so nothing under- or overflows); an image without contrast (all pixels within a relative
    1e-6 of each other) gives zeros.
    """
    a = np.asarray(img)
    if np.issubdtype(a.dtype, np.floating) or a.dtype.itemsize > 4:
        x64 = a.astype(np.float64)
        m = float(np.max(np.abs(x64))) if x64.size else 0.0
        if not (m > 0 and np.isfinite(m)):
            return np.zeros(a.shape, dtype=np.float32)
        x64 /= m
        lo, hi = np.percentile(x64, [low, high])
        scale = float(hi - lo)
        if scale <= 1e-6 * max(abs(float(lo)), abs(float(hi))) or scale <= 0:
            return np.zeros(a.shape, dtype=np.float32)
        return ((x64 - lo) / scale).astype(np.float32)
    x = a.astype(np.float32)
    lo, hi = np.percentile(x, [low, high])
    scale = float(hi - lo)
    if scale < 1e-6:
        return np.zeros_like(x, dtype=np.float32)
    return ((x - lo) / scale).astype(np.float32)


def image_header_shape(path: str | os.PathLike[str]) -> tuple[int, int] | None:
    """``(height, width)`` of an image file from its header (no pixels decoded), None if unknown."""
    p = Path(path)
    try:
        if p.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            with tifffile.TiffFile(p) as tf:
                page = tf.pages[0]
                h, w = int(page.imagelength), int(page.imagewidth)
                if _tiff_orientation(page) in (5, 6, 7, 8):
                    h, w = w, h
                return h, w
        from PIL import Image

        with Image.open(p) as im:
            h, w = im.height, im.width
            if int(im.getexif().get(0x0112, 1) or 1) in (5, 6, 7, 8):
                h, w = w, h
            return h, w
    except Exception:  # noqa: BLE001 - unknown: the caller reads the image itself
        return None


_GLOB_CHARS = frozenset("*?[")


def _expand_glob(pattern: str) -> list[Path]:
    """The image files a quoted shell pattern (``'frames/*.tif'``, ``'runs/**/*.png'``) matches,
    sorted; folders it matches are expanded as folders are."""
    import glob

    out: list[Path] = []
    for m in sorted(glob.glob(pattern, recursive=True)):
        q = Path(m)
        if q.is_dir():
            out.extend(sorted(f for f in q.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES))
        elif q.is_file() and q.suffix.lower() in IMAGE_SUFFIXES:
            out.append(q)
    return out


def list_images(inputs: list[str] | list[Path] | str | Path) -> list[Path]:
    """Expand files, folders (recursively) and quoted glob patterns into a sorted list of image
    files. A pattern is expanded only when no file has that literal name (a file may be called
    ``a[1].tif``); one that matches no image is an error naming the pattern."""
    if isinstance(inputs, (str, Path)):
        inputs = [inputs]
    out: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            out.extend(sorted(q for q in p.rglob("*") if q.is_file() and q.suffix.lower() in IMAGE_SUFFIXES))
        elif p.exists():
            out.append(p)
        elif _GLOB_CHARS & set(str(item)):
            found = _expand_glob(str(item))
            if not found:
                raise InputFileError(p, "the pattern matches no image file")
            out.extend(found)
        else:
            raise InputFileError(p, "no such file or folder")
    return out
