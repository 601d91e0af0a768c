"""COCO json -> one uint16 instance label TIFF per image (``OUT/<image stem>.tif``), fast and lean.

LIVECell's training json is over 1 GB. ``json.load`` of such a file takes several GB of memory
(every coordinate becomes a Python float), and pycocotools' ``COCO()`` adds its index on top. This
module never holds the annotations in memory:

1. **Scan** (one streaming pass, parent process): the file is read in 8 MB chunks and every
   top-level value is decoded with the C JSON scanner; the small ones (``images``, ``categories``,
   ``info``) are kept, each annotation is decoded just long enough to read its ``image_id`` and then
   dropped. What is kept per image is a few byte ranges of the file ("runs" of consecutive
   annotations of that image), so memory is independent of the number of cells.
2. **Check** every image file before anything is written (when ``images_dir`` is given): found,
   readable TIFF/PNG header, same size as its json entry. Bad input fails here with one line.
3. **Rasterize** in a process pool: each worker reads its image's byte ranges from the json,
   decodes them, rasterizes with :func:`livecell_seg.data.coco.rasterize_annotations` (pycocotools
   on each annotation's bounding box; smaller cells on top, see there) and writes the label TIFF
   atomically.

Both json forms (``annotations`` as a list or as a dict keyed by id) are streamed. Duplicate image
entries are merged (their annotations go to the first entry); exact duplicate contours are dropped.
A run can be resumed: an existing output folder made from the same json with the same options keeps
its finished label files.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from array import array
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputFileError, LivecellError
from ..io import folder_lock, sweep_stale_parts, write_json_atomic, write_labels, write_tiff_atomic
from ..progress import Progress, progress_bar
from .coco import (
    DEFAULT_MIN_FRAGMENT,
    RasterStats,
    _check_json_file,
    check_images,
    dedupe_images,
    find_image,
    parse_id,
    rasterize_annotations,
)

_CHUNK = 8 << 20
_WS = " \t\n\r"
MANIFEST = "convert_manifest.json"
SUMMARY = "convert_summary.json"


# --------------------------------------------------------------------------------------------------
# streaming scan of the json
# --------------------------------------------------------------------------------------------------
class _Reader:
    """A window over a file decoded as latin-1, so that character offsets are byte offsets.

    The JSON structure is ASCII, so the C scanner parses it correctly; strings that hold UTF-8 are
    re-decoded from their bytes where they matter (images, categories, info).
    """

    def __init__(self, path: Path, chunk: int | None = None) -> None:
        self.path = path
        self.f = open(path, "rb")  # noqa: SIM115 - closed in close()
        self.size = os.fstat(self.f.fileno()).st_size
        self.chunk = chunk or _CHUNK
        self.buf = ""
        self.base = 0  # byte offset of buf[0]
        self.pos = 0
        self.eof = False
        self.decoder = json.JSONDecoder()

    def close(self) -> None:
        self.f.close()

    def fill(self) -> bool:
        """Drop what was consumed and read the next chunk; False at end of file."""
        if self.eof:
            return False
        # read at least as much as is pending: a value larger than the window is read in
        # geometrically growing pieces instead of being re-decoded once per chunk
        data = self.f.read(max(self.chunk, len(self.buf) - self.pos))
        if not data:
            self.eof = True
            return False
        self.buf = self.buf[self.pos :] + data.decode("latin-1")
        self.base += self.pos
        self.pos = 0
        return True

    def truncated(self) -> InputFileError:
        return InputFileError(
            self.path, f"truncated JSON (file ends unexpectedly after {self.size:,} bytes; re-download it)"
        )

    def invalid(self, what: str) -> InputFileError:
        off = self.base + self.pos
        return InputFileError(self.path, f"invalid JSON at byte {off:,}: {what}")

    def peek(self) -> str:
        """Next non-blank character ('' at end of file), not consumed."""
        while True:
            buf, n = self.buf, len(self.buf)
            p = self.pos
            while p < n and buf[p] in _WS:
                p += 1
            self.pos = p
            if p < n:
                return buf[p]
            if not self.fill():
                return ""

    def expect(self, ch: str) -> None:
        c = self.peek()
        if c == "":
            raise self.truncated()
        if c != ch:
            raise self.invalid(f"expected '{ch}', found '{c}'")
        self.pos += 1

    def value(self) -> tuple[Any, int, int]:
        """Decode the next value; return (value, start byte, end byte)."""
        if self.peek() == "":
            raise self.truncated()
        while True:
            try:
                obj, end = self.decoder.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as e:
                if self.fill():  # the value may continue in the next chunk
                    continue
                if e.pos >= len(self.buf) - 1 or "Unterminated" in e.msg:
                    raise self.truncated() from None
                self.pos = e.pos
                raise self.invalid(e.msg) from None
            if end >= len(self.buf) - 1 and not self.eof and self.fill():
                continue  # a number/literal may continue in the next chunk: decode again
            start = self.base + self.pos
            self.pos = end
            return obj, start, self.base + end

    def raw(self, start: int, end: int) -> bytes:
        """Original bytes of a value that is still in the buffer."""
        return self.buf[start - self.base : end - self.base].encode("latin-1")


@dataclass
class ScanResult:
    """What the streaming scan learnt about a COCO json (annotations themselves are not kept)."""

    path: Path
    images: list[dict]  #: kept (deduplicated) image entries
    categories: list[dict]
    info: dict
    duplicates: list[tuple[str, list[int]]]
    dict_form: bool  #: annotations stored as a dict keyed by id (Kaggle mirror)
    n_annotations: int
    orphan_annotations: int
    #: kept image id -> byte ranges [(start, end), ...] of runs of its annotations in the file
    runs: dict[int, list[tuple[int, int]]] = field(default_factory=dict)


def scan_coco(path: str | os.PathLike[str], chunk: int | None = None) -> ScanResult:
    """Stream a COCO json once; return its images and where each image's annotations are.

    Memory stays at a few chunks plus the image entries, whatever the number of annotations.
    Raises :class:`InputFileError` for missing, empty, truncated, HTML, non-JSON or non-COCO files.
    """

    p = Path(path)
    _check_json_file(p)
    r = _Reader(p, chunk)
    try:
        return _scan(r)
    except RecursionError:
        raise InputFileError(p, "JSON nested too deeply (not a COCO annotation file)") from None
    finally:
        r.close()


def _scan(r: _Reader) -> ScanResult:
    p = r.path
    top: dict[str, Any] = {}
    # per annotation run: image id, first byte, last byte (consecutive annotations of one image)
    run_img, run_start, run_end = array("q"), array("q"), array("q")
    n_ann = 0
    dict_form = False
    seen_ann = False
    r.expect("{")
    if r.peek() == "}":
        raise InputFileError(p, "not a COCO annotation file (empty object)")
    while True:
        key, _, _ = r.value()
        if not isinstance(key, str):
            raise r.invalid("expected a key")
        r.expect(":")
        if key == "annotations":
            seen_ann = True
            c = r.peek()
            if c not in ("[", "{"):
                raise InputFileError(
                    p, "not a COCO annotation file ('annotations' is neither a list nor a dict)"
                )
            dict_form = c == "{"
            n_ann = _scan_annotations(r, dict_form, run_img, run_start, run_end)
        else:
            _value, s, e = r.value()
            if key in ("images", "categories", "info"):
                # re-decode from the original bytes so that UTF-8 text is right
                top[key] = json.loads(r.raw(s, e)) if not isinstance(_value, (int, float)) else _value
        c = r.peek()
        if c == ",":
            r.pos += 1
            continue
        if c == "}":
            r.pos += 1
            break
        if c == "":
            raise r.truncated()
        raise r.invalid(f"expected ',' or '}}', found '{c}'")
    if r.peek() != "":
        raise r.invalid("unexpected data after the end of the JSON object")
    if "images" not in top or not seen_ann:
        raise InputFileError(p, "not a COCO annotation file (no 'images' and 'annotations')")
    images = check_images(top["images"], p)
    kept, remap, duplicates = dedupe_images(images)
    runs: dict[int, list[tuple[int, int]]] = {int(im["id"]): [] for im in kept}
    orphans = 0
    if len(run_img):
        ids = np.frombuffer(run_img, dtype=np.int64)
        starts = np.frombuffer(run_start, dtype=np.int64)
        ends = np.frombuffer(run_end, dtype=np.int64)
        for iid, s, e in zip(ids.tolist(), starts.tolist(), ends.tolist()):
            k = remap.get(iid)
            if k is None:
                orphans += len(read_run(p, s, e, dict_form))
                continue
            runs[k].append((s, e))
    cats = top.get("categories") or [{"id": 1, "name": "cell", "supercategory": "cell"}]
    info = top.get("info") if isinstance(top.get("info"), dict) else {}
    return ScanResult(
        path=p,
        images=kept,
        categories=list(cats),
        info=info or {},
        duplicates=duplicates,
        dict_form=dict_form,
        n_annotations=n_ann,
        orphan_annotations=orphans,
        runs=runs,
    )


def _scan_annotations(r: _Reader, dict_form: bool, run_img: array, run_start: array, run_end: array) -> int:
    """Walk the annotations container, recording runs of consecutive annotations per image."""
    p = r.path
    r.pos += 1  # '[' or '{'
    closing = "}" if dict_form else "]"
    n = 0
    cur_img: int | None = None
    cur_start = cur_end = 0
    if r.peek() == closing:
        r.pos += 1
        return 0
    while True:
        if dict_form:
            key, elem_start, _ = r.value()
            if not isinstance(key, str):
                raise r.invalid("expected an annotation id key")
            r.expect(":")
            ann, _, elem_end = r.value()
        else:
            ann, elem_start, elem_end = r.value()
        if not isinstance(ann, dict) or "image_id" not in ann:
            raise InputFileError(p, f"annotation #{n + 1} (byte {elem_start:,}) has no image_id")
        iid = parse_id(ann["image_id"], p, f"annotation #{n + 1}'s image_id")
        if iid == cur_img:
            cur_end = elem_end
        else:
            if cur_img is not None:
                run_img.append(cur_img)
                run_start.append(cur_start)
                run_end.append(cur_end)
            cur_img, cur_start, cur_end = iid, elem_start, elem_end
        n += 1
        c = r.peek()
        if c == ",":
            r.pos += 1
            continue
        if c == closing:
            r.pos += 1
            break
        if c == "":
            raise r.truncated()
        raise r.invalid(f"expected ',' or '{closing}' between annotations, found '{c}'")
    if cur_img is not None:
        run_img.append(cur_img)
        run_start.append(cur_start)
        run_end.append(cur_end)
    return n


def read_run(
    path: str | os.PathLike[str], start: int, end: int, dict_form: bool, f: Any = None
) -> list[dict]:
    """Decode one run of annotations (bytes ``start:end`` of the json). Fills in ids from dict keys."""
    if f is None:
        with open(path, "rb") as fh:
            fh.seek(start)
            data = fh.read(end - start)
    else:
        f.seek(start)
        data = f.read(end - start)
    if dict_form:
        d = json.loads(b"{" + data + b"}")
        out = []
        for k, a in d.items():
            if "id" not in a:
                a["id"] = int(k) if str(k).lstrip("-").isdigit() else k
            out.append(a)
        return out
    return json.loads(b"[" + data + b"]")


# --------------------------------------------------------------------------------------------------
# conversion
# --------------------------------------------------------------------------------------------------
@dataclass
class ConvertSummary:
    """What :func:`convert` did."""

    json: str
    out: str
    images: int = 0  #: images in the json (after merging duplicates)
    written: int = 0  #: label files written in this run
    resumed: int = 0  #: label files already there from an earlier, identical run (kept)
    empty_images: int = 0  #: images without any cell (an all-zero label image is written)
    annotations: int = 0  #: annotations in the json
    orphan_annotations: int = 0  #: annotations of an image id that is not in the json (ignored)
    duplicate_images: list = field(default_factory=list)  #: [(file_name, [kept id, dropped ids...])]
    stats: dict = field(default_factory=dict)  #: summed RasterStats of the images written
    seconds: float = 0.0
    scan_seconds: float = 0.0  #: of which streaming the json
    workers: int = 1
    semantic: bool = False

    def lines(self) -> list[str]:
        """A short human-readable summary."""
        s = self.stats
        out = [
            f"images: {self.images} ({self.written} written, {self.resumed} already done, "
            f"{self.empty_images} without cells)",
            f"annotations: {self.annotations:,}; cells written: {s.get('cells', 0):,}",
        ]
        dropped = {
            "degenerate polygon/RLE (< 3 points, zero area, outside the image)": s.get("degenerate", 0),
            "exact duplicate contour": s.get("duplicate", 0),
            "hidden under smaller cells (< min_fragment pixels visible)": s.get("hidden", 0),
            "image id not in the json": self.orphan_annotations,
        }
        parts = [f"{v:,} {k}" for k, v in dropped.items() if v]
        out.append("cells dropped: " + ("; ".join(parts) if parts else "none"))
        if s.get("split", 0):
            out.append(
                f"cells cut in pieces by cells on top: {s['split']:,} (kept their largest piece; "
                f"{s.get('fragment_pixels', 0):,} pixels of smaller pieces set to background)"
            )
        if self.duplicate_images:
            names = ", ".join(n for n, _ in self.duplicate_images[:3])
            more = f" and {len(self.duplicate_images) - 3} more" if len(self.duplicate_images) > 3 else ""
            out.append(f"duplicate image entries merged: {len(self.duplicate_images)} ({names}{more})")
        out.append(
            f"time: {self.seconds:.1f} s (json scan {self.scan_seconds:.1f} s) with {self.workers} worker(s) "
            f"-> {self.out}"
        )
        return out


@dataclass
class _Task:
    image: dict
    runs: list[tuple[int, int]]
    label_path: str
    semantic_path: str | None


# worker-process state: the json file handle and the options
_W: dict[str, Any] = {}


def _init_worker(json_path: str, dict_form: bool, min_fragment: int) -> None:
    _W["f"] = open(json_path, "rb")  # noqa: SIM115 - lives as long as the worker
    _W["path"] = json_path
    _W["dict_form"] = dict_form
    _W["min_fragment"] = min_fragment


def _work(task: _Task) -> tuple[str, dict]:

    anns: list[dict] = []
    for s, e in task.runs:
        anns.extend(read_run(_W["path"], s, e, _W["dict_form"], f=_W["f"]))
    h, w = int(task.image["height"]), int(task.image["width"])
    try:
        res = rasterize_annotations(anns, h, w, min_fragment=_W["min_fragment"])
    except ValueError as e:  # e.g. more cells than uint16 labels hold
        raise LivecellError(f"{task.image['file_name']}: {e}") from None
    try:
        write_labels(task.label_path, res.labels)
        if task.semantic_path is not None:
            assert res.foreground is not None
            write_tiff_atomic(task.semantic_path, res.foreground.astype(np.uint8) * 255, compression="zlib")
    except OSError as e:
        raise LivecellError(f"{task.label_path}: cannot write ({e.strerror or e})") from None
    return task.label_path, res.stats.as_dict()


def check_image_file(path: Path, image: dict) -> None:
    """Check that an image file is readable and matches its json entry's size (header only)."""
    h, w = int(image["height"]), int(image["width"])
    shape: tuple[int, ...] | None = None
    if path.stat().st_size == 0:
        raise InputFileError(path, "image file is empty")
    if path.suffix.lower() in (".tif", ".tiff"):
        try:
            import tifffile

            with tifffile.TiffFile(path) as tf:
                shape = tuple(tf.pages[0].shape)
        except Exception:  # noqa: BLE001 - try Pillow next
            shape = None
    if shape is None:
        try:
            from PIL import Image

            with Image.open(path) as im:
                shape = (im.height, im.width)
        except Exception as e:  # noqa: BLE001
            raise InputFileError(path, f"cannot read image ({type(e).__name__})") from None
    if tuple(shape[:2]) != (h, w) and not (len(shape) == 3 and shape[1:] == (h, w)):
        raise InputFileError(path, f"image is {shape[1]}x{shape[0]} but the json says {w}x{h}")


def _options_key(scan: ScanResult, min_fragment: int, semantic: bool) -> dict:
    st = scan.path.stat()
    return {
        "json": str(scan.path.resolve()),
        "json_size": st.st_size,
        "json_mtime_ns": st.st_mtime_ns,
        "min_fragment": min_fragment,
        "semantic": semantic,
        "version": 1,
    }


def _check_inputs(scan: ScanResult, images_dir: str | os.PathLike[str] | None) -> None:
    """Refuse two images that would write the same label file and, with ``images_dir``, an image
    that is missing, unreadable or not of the json's size."""
    stems: dict[str, str] = {}
    for im in scan.images:
        stem = Path(im["file_name"]).stem
        if stem in stems:
            raise InputFileError(
                scan.path,
                f"two images would write the same label file {stem}.tif: {stems[stem]}, {im['file_name']}",
            )
        stems[stem] = im["file_name"]
    if images_dir is not None:
        if not Path(images_dir).is_dir():
            raise InputFileError(images_dir, "images folder not found")
        for im in scan.images:
            check_image_file(find_image(images_dir, im["file_name"]), im)


def _same_options(manifest: Path, key: dict) -> bool:
    """Whether an earlier run's manifest records these very json and options (its files are kept)."""
    if not manifest.is_file():
        return False
    try:
        return json.loads(manifest.read_text()) == key
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return False


def convert(
    json_path: str | os.PathLike[str],
    out: str | os.PathLike[str],
    images_dir: str | os.PathLike[str] | None = None,
    workers: int | None = None,
    semantic: bool = False,
    min_fragment: int = DEFAULT_MIN_FRAGMENT,
    resume: bool = True,
    progress: Progress = False,
) -> ConvertSummary:
    """Convert a COCO/LIVECell json into ``out/<image stem>.tif`` uint16 instance label images.

    ``images_dir`` (optional) is checked first: every image must exist (official layout with
    cell-type folders, flat folders), be readable and have the json's size; nothing is written
    otherwise. With ``semantic`` a binary foreground mask (uint8 0/255, union of all annotations)
    goes to ``out/semantic/<stem>.tif``. ``workers`` processes rasterize in parallel (default: CPU
    count, at most 8). ``resume`` keeps label files of an earlier run with the same json and
    options. ``progress``: see :mod:`livecell_seg.progress`.
    Raises :class:`InputFileError` / :class:`LivecellError` on bad input.
    """
    t0 = time.perf_counter()
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputFileError(out, "output path exists and is not a folder")
    scan = scan_coco(json_path)
    scan_seconds = time.perf_counter() - t0
    _check_inputs(scan, images_dir)
    key = _options_key(scan, min_fragment, semantic)
    manifest = out / MANIFEST
    keep_existing = resume and _same_options(manifest, key)
    created = not out.exists()
    had_manifest = manifest.is_file()
    with folder_lock(out, "convert"):  # creates out; a second run into it at once is refused
        sweep_stale_parts(out)  # temporary files of a killed earlier run
        write_json_atomic(manifest, key)

        summary = ConvertSummary(
            json=str(scan.path),
            out=str(out),
            images=len(scan.images),
            annotations=scan.n_annotations,
            orphan_annotations=scan.orphan_annotations,
            duplicate_images=[[n, ids] for n, ids in scan.duplicates],
            semantic=semantic,
            scan_seconds=scan_seconds,
        )
        tasks: list[_Task] = []
        for im in scan.images:
            stem = Path(im["file_name"]).stem
            lp = out / f"{stem}.tif"
            sp = out / "semantic" / f"{stem}.tif" if semantic else None
            if keep_existing and lp.is_file() and (sp is None or sp.is_file()):
                summary.resumed += 1
                continue
            tasks.append(_Task(im, scan.runs.get(int(im["id"]), []), str(lp), str(sp) if sp else None))
        n_workers = max(1, min(workers or min(os.cpu_count() or 1, 8), len(tasks) or 1))
        summary.workers = n_workers
        total = RasterStats()
        done = 0
        results = _run_tasks(tasks, scan, min_fragment, n_workers)
        try:
            for _path, st in progress_bar(results, progress, "convert", total=len(tasks), leave=False):
                done += 1
                total.add(RasterStats(**st))
                if st["cells"] == 0:
                    summary.empty_images += 1
        except BaseException:
            if done == 0 and not had_manifest:  # nothing finished: leave no trace of this run
                with contextlib.suppress(OSError):
                    manifest.unlink()
                for folder in (out / "semantic", out) if created else ():
                    with contextlib.suppress(OSError):
                        folder.rmdir()  # only when empty
            raise
        summary.written = done
        summary.stats = total.as_dict()
        summary.seconds = time.perf_counter() - t0
        write_json_atomic(out / SUMMARY, asdict(summary))
        return summary


def _run_tasks(
    tasks: list[_Task], scan: ScanResult, min_fragment: int, n_workers: int
) -> Iterator[tuple[str, dict]]:
    init = (str(scan.path), scan.dict_form, min_fragment)
    if n_workers <= 1 or len(tasks) <= 1:
        _init_worker(*init)
        try:
            for t in tasks:
                yield _work(t)
        finally:
            _W["f"].close()
        return
    import multiprocessing as mp
    import threading
    from concurrent.futures import ProcessPoolExecutor

    # fork is fastest and needs no importable __main__; it is only safe without other threads
    methods = mp.get_all_start_methods()
    if "fork" in methods and threading.active_count() == 1:
        method = "fork"
    else:
        method = "forkserver" if "forkserver" in methods else "spawn"
    chunksize = max(1, min(16, len(tasks) // (n_workers * 8)))
    with ProcessPoolExecutor(
        n_workers, mp_context=mp.get_context(method), initializer=_init_worker, initargs=init
    ) as ex:
        yield from ex.map(_work, tasks, chunksize=chunksize)
