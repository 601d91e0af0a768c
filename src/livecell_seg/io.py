"""Image and label I/O shared by every stage: robust reading, normalization, atomic writes.

Pure numpy/tifffile/Pillow; no torch.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputFileError

IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg")
#: TIFF "Software" tag of the label images we write: how readers (the napari plugin) tell them
#: from microscopy images
LABELS_SOFTWARE = "livecell-seg labels"

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` only on success.

    Nothing is ever left half-written under the final name.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".part", dir=final.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; outputs get the usual mode
        os.replace(tmp_path, final)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        raise


def read_json(path: str | os.PathLike[str]) -> Any:
    """Parse a JSON file; a missing, unreadable or invalid file raises a one-line InputFileError."""
    p = Path(path)
    if not p.is_file():
        raise InputFileError(p, "file not found")
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise InputFileError(p, f"invalid JSON ({e.msg} at line {e.lineno})") from None
    except (UnicodeDecodeError, OSError) as e:
        raise InputFileError(p, f"cannot be read as JSON ({type(e).__name__})") from None


def write_json_atomic(path: str | os.PathLike[str], obj: Any, indent: int | None = 2) -> None:
    """Write ``obj`` as JSON to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=indent) + "\n")


def write_tiff_atomic(
    path: str | os.PathLike[str], array: np.ndarray, compression: str = "zlib", software: str | None = None
) -> None:
    """Write a 2-D array as a (compressed) TIFF atomically (``software``: the TIFF Software tag)."""
    import tifffile

    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, array, compression=compression, software=software)


def write_labels(path: str | os.PathLike[str], labels: np.ndarray) -> None:
    """Write an instance label image as uint16 TIFF (0 = background), atomically.

    Its TIFF Software tag is :data:`LABELS_SOFTWARE` (:func:`is_labels_tiff`). Raises ValueError
    when there are more than 65,535 instances.
    """
    labels = np.asarray(labels)
    if labels.size and int(labels.max()) > np.iinfo(np.uint16).max:
        raise ValueError(f"{path}: too many instances for uint16 ({int(labels.max())})")
    write_tiff_atomic(path, labels.astype(np.uint16, copy=False), software=LABELS_SOFTWARE)


def is_labels_tiff(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a label TIFF written by :func:`write_labels` (its Software tag)."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            return tif.pages[0].software == LABELS_SOFTWARE
    except Exception:  # noqa: BLE001 - not a (readable) TIFF
        return False


def _to_grey(arr: np.ndarray, path: Path) -> np.ndarray:
    arr = np.squeeze(arr)
    if arr.ndim == 2:
        return arr
    if arr.ndim == 3:
        # channels last (H, W, C) or channels first (C, H, W)
        if arr.shape[-1] in (3, 4):
            rgb = arr[..., :3].astype(np.float32)
        elif arr.shape[0] in (3, 4):
            rgb = np.moveaxis(arr[:3], 0, -1).astype(np.float32)
        elif arr.shape[-1] == 2:  # grey + alpha
            return arr[..., 0]
        else:
            raise InputFileError(path, f"unsupported image shape {arr.shape} (expected 2-D grey or RGB)")
        grey = rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        if np.issubdtype(arr.dtype, np.integer):
            return np.clip(np.rint(grey), 0, np.iinfo(arr.dtype).max).astype(arr.dtype)
        return grey
    raise InputFileError(path, f"unsupported image shape {arr.shape} (expected 2-D grey or RGB)")


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a microscopy image as a 2-D grey array in its stored dtype.

    TIFF (LZW included, via tifffile + imagecodecs, falling back to Pillow), PNG and JPEG;
    8-, 16-bit or float; RGB(A) is converted to grey. Raises :class:`InputFileError` with a
    one-line message for a missing, empty or unreadable file.
    """
    p = Path(path)
    if not p.is_file():
        raise InputFileError(p, "file not found")
    if p.stat().st_size == 0:
        raise InputFileError(p, "file is empty")
    arr: np.ndarray | None = None
    err: Exception | None = None
    if p.suffix.lower() in (".tif", ".tiff"):
        try:
            import tifffile

            arr = tifffile.imread(p)
        except Exception as e:  # noqa: BLE001 - try Pillow next
            err = e
    if arr is None:
        try:
            from PIL import Image

            with Image.open(p) as im:
                im.load()
                if im.mode in ("I;16", "I;16B", "I;16L"):
                    arr = np.asarray(im, dtype=np.uint16)
                elif im.mode == "P":
                    arr = np.asarray(im.convert("L"))
                else:
                    arr = np.asarray(im)
        except Exception as e:  # noqa: BLE001
            err = err or e
            raise InputFileError(
                p,
                f"cannot read image ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else 'unknown'})",
            ) from None
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    arr = _to_grey(np.asarray(arr), p)
    if arr.ndim != 2 or min(arr.shape) < 1:
        raise InputFileError(p, f"unsupported image shape {arr.shape}")
    return arr


def read_labels(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an instance label image (2-D integer array). Raises InputFileError if unreadable."""
    p = Path(path)
    if not p.is_file():
        raise InputFileError(p, "file not found")
    try:
        import tifffile

        arr = tifffile.imread(p) if p.suffix.lower() in (".tif", ".tiff") else None
    except Exception as e:  # noqa: BLE001
        raise InputFileError(p, f"cannot read label image ({type(e).__name__})") from None
    if arr is None:
        arr = read_image(p)
    arr = np.squeeze(arr)
    if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.integer):
        raise InputFileError(p, f"not a 2-D integer label image (shape {arr.shape}, dtype {arr.dtype})")
    return arr


def normalize_image(img: np.ndarray, low: float = 1.0, high: float = 99.8) -> np.ndarray:
    """Percentile-normalize a grey image to float32 (``low`` percentile -> 0, ``high`` -> 1).

    The same function is used in training and inference, so any bit depth works.
    """
    x = np.asarray(img, dtype=np.float32)
    lo, hi = np.percentile(x, [low, high])
    scale = float(hi - lo)
    if scale < 1e-6:
        return np.zeros_like(x, dtype=np.float32)
    return ((x - lo) / scale).astype(np.float32)


def list_images(inputs: list[str] | list[Path] | str | Path) -> list[Path]:
    """Expand files and folders (recursively) into a sorted list of image files."""
    if isinstance(inputs, (str, Path)):
        inputs = [inputs]
    out: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            out.extend(sorted(q for q in p.rglob("*") if q.is_file() and q.suffix.lower() in IMAGE_SUFFIXES))
        elif p.exists():
            out.append(p)
        else:
            raise InputFileError(p, "no such file or folder")
    return out
