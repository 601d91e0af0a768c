"""Download LIVECell: resumable (HTTP Range), validated, atomically unzipped, idempotent.

Files land under ``OUT`` with the same relative paths as on the server::

    OUT/images/livecell_train_val_images/<CellType>/*.tif      (from images.zip, unzipped)
    OUT/images/livecell_test_images/<CellType>/*.tif
    OUT/annotations/LIVECell/livecell_coco_{train,val,test}.json
    OUT/annotations/LIVECell_single_cells/<type>/{train,val,test}.json
    OUT/annotations/LIVECell_dataset_size_split/<n>_train<k>percent.json

A transfer is written to ``<name>.part`` and resumed from there (``Range: bytes=N-``) after an
interruption, within the same run (``retries``) or in a later run. The finished file is validated
(zip: CRC of every member; json: a full streaming parse as a COCO file) before it gets its final
name, so a final name never holds a partial or corrupt file. ``images.zip`` is extracted into a
temporary folder that is moved into place, then deleted unless ``keep_zip``. Whatever is already
complete is skipped. The base URL can be changed for mirrors (``base_url`` or ``LIVECELL_BASE_URL``).

Integrity: the official URL is https; plain http is accepted only for a server on this machine
(127.0.0.1, tests and local mirrors). Each finished file's SHA-256 is checked against
:data:`KNOWN_SHA256` and any digests given by the user (a ``sha256sum``-style file:
``sha256_file`` / ``--sha256`` / ``$LIVECELL_SHA256``); a mismatch deletes the file. LIVECell
publishes no checksums and none were measured for this project, so :data:`KNOWN_SHA256` is empty:
without user digests a file is only validated structurally (zip CRCs, COCO parse) and its digest
is recorded in ``OUT/.livecell_download/SHA256SUMS`` so that later downloads can be pinned to it.
``images.zip`` is refused when it would unpack to more than ``max_unzipped_bytes``
(default 16 GiB; ``$LIVECELL_MAX_UNZIPPED_BYTES``), counted while extracting, and extraction never
replaces an existing folder by a file (or a file by a folder).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import http.client
import ipaddress
import json
import logging
import os
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputFileError, LivecellError
from ..progress import Progress, ProgressBar

log = logging.getLogger(__name__)

BASE_URL = "https://livecell-dataset.s3.eu-central-1.amazonaws.com/LIVECell_dataset_2021/"
ENV_BASE_URL = "LIVECELL_BASE_URL"
#: a ``sha256sum``-style file of expected digests (``<hex>  <path relative to the base URL>``)
ENV_SHA256 = "LIVECELL_SHA256"
#: cap on what ``images.zip`` may unpack to, in bytes
ENV_MAX_UNZIPPED = "LIVECELL_MAX_UNZIPPED_BYTES"
DEFAULT_MAX_UNZIPPED = 16 << 30
#: SHA-256 of each file, by path relative to the base URL. LIVECell publishes no checksums and
#: nobody measured them for this project yet, so it is empty: fill it in only with digests
#: computed from a trusted download (``OUT/.livecell_download/SHA256SUMS`` records them).
KNOWN_SHA256: dict[str, str] = {}
SUMS_FILE = "SHA256SUMS"
SINGLE_CELL_TYPES = ("a172", "bt474", "bv2", "huh7", "mcf7", "shsy5y", "skbr3", "skov3")
SIZE_SPLITS = (
    "0_train2percent",
    "1_train4percent",
    "2_train5percent",
    "3_train25percent",
    "4_train50percent",
)
GROUPS = ("images", "annotations", "single-cell-types", "size-splits")
DEFAULT_GROUPS = ("images", "annotations")
_DONE_DIR = ".livecell_download"


@dataclass(frozen=True)
class Item:
    """One file of the dataset: its path relative to the base URL (and to OUT)."""

    rel: str
    kind: str  #: "zip" (validated and extracted) or "json" (validated as COCO)


def catalog(what: Iterable[str] = DEFAULT_GROUPS) -> list[Item]:
    """The files of the requested groups (``images``, ``annotations``, ``single-cell-types``, ``size-splits``)."""
    items: list[Item] = []
    for g in what:
        g = g.strip()
        if g == "images":
            items.append(Item("images.zip", "zip"))
        elif g == "annotations":
            items += [
                Item(f"annotations/LIVECell/livecell_coco_{s}.json", "json") for s in ("train", "val", "test")
            ]
        elif g == "single-cell-types":
            items += [
                Item(f"annotations/LIVECell_single_cells/{t}/{s}.json", "json")
                for t in SINGLE_CELL_TYPES
                for s in ("train", "val", "test")
            ]
        elif g == "size-splits":
            items += [Item(f"annotations/LIVECell_dataset_size_split/{n}.json", "json") for n in SIZE_SPLITS]
        elif g:
            raise LivecellError(f"unknown --what entry '{g}' (choose from {', '.join(GROUPS)})")
    return items


def resolve_base_url(base_url: str | None = None) -> str:
    """``base_url``, else $LIVECELL_BASE_URL, else the official URL; always ending in '/'."""
    url = base_url or os.environ.get(ENV_BASE_URL) or BASE_URL
    return url if url.endswith("/") else url + "/"


@dataclass
class DownloadResult:
    """What happened to one item."""

    item: Item
    path: Path  #: the file (json) or the extraction folder (zip)
    status: str  #: "downloaded" or "skipped"
    bytes: int = 0  #: bytes transferred in this run
    resumed_from: int = 0  #: byte offset the transfer resumed from (0 = from scratch)


class _Interrupted(Exception):
    """A transfer that stopped early (connection lost); it can be resumed."""


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(url: str) -> None:
    """Refuse anything but https (plain http only to this machine: tests, local mirrors)."""
    u = urllib.parse.urlparse(url)
    if u.scheme == "https":
        return
    if u.scheme == "http" and _is_loopback(u.hostname):
        return
    if u.scheme == "http":
        raise LivecellError(f"{url}: plain http is not accepted (use https; http only for 127.0.0.1)")
    raise LivecellError(f"{url}: only https URLs are supported")


def read_sha256_file(path: str | os.PathLike[str]) -> dict[str, str]:
    """Parse a ``sha256sum``-style file into {relative path: lower-case hex digest}."""
    p = Path(path)
    if not p.is_file():
        raise InputFileError(p, "SHA-256 file not found")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise InputFileError(p, f"cannot read SHA-256 file ({type(e).__name__})") from None
    out: dict[str, str] = {}
    for n, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(maxsplit=1)
        digest = parts[0].lower()
        if len(parts) != 2 or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise InputFileError(p, f"line {n} is not '<64 hex digits>  <file>'")
        out[parts[1].strip().lstrip("*").lstrip("./")] = digest
    return out


def expected_sha256(item: Item, extra: dict[str, str] | None = None) -> str | None:
    """The expected SHA-256 of ``item``: the user's digests first, then :data:`KNOWN_SHA256`."""
    for table in (extra or {}, KNOWN_SHA256):
        if item.rel in table:
            return table[item.rel]
    return None


def sha256_of(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, streamed."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while buf := f.read(chunk):
            h.update(buf)
    return h.hexdigest()


def max_unzipped_bytes() -> int:
    """The cap on what a zip may unpack to: ``$LIVECELL_MAX_UNZIPPED_BYTES`` or 16 GiB."""
    from ..io import positive_env_int

    return positive_env_int(ENV_MAX_UNZIPPED, DEFAULT_MAX_UNZIPPED, "bytes")


def _open(url: str, offset: int, timeout: float):  # noqa: ANN202 - http.client.HTTPResponse
    req = urllib.request.Request(url, headers={"User-Agent": "livecell-seg", "Accept-Encoding": "identity"})
    if offset:
        req.add_header("Range", f"bytes={offset}-")
    return urllib.request.urlopen(req, timeout=timeout)  # noqa: S310 - http(s) URLs only, checked


def fetch(
    url: str,
    dest: str | os.PathLike[str],
    retries: int = 5,
    timeout: float = 60.0,
    progress: Progress = False,
    chunk: int = 1 << 20,
    on_chunk: Callable[[int], None] | None = None,
) -> tuple[int, int]:
    """Download ``url`` into ``dest + '.part'``, resuming a previous partial transfer.

    Returns (bytes transferred now, offset resumed from). Does not validate or rename: the caller
    does that. Raises :class:`LivecellError` (one line) when the server refuses or the transfer
    keeps failing after ``retries`` resumptions; the ``.part`` file is kept for a later resume.
    """
    check_url(url)
    part = Path(str(dest) + ".part")
    part.parent.mkdir(parents=True, exist_ok=True)
    first_offset = part.stat().st_size if part.exists() else 0
    transferred = 0
    attempt = 0
    bar: ProgressBar | None = None
    try:
        while True:
            offset = part.stat().st_size if part.exists() else 0
            try:
                resp = _open(url, offset, timeout)
            except urllib.error.HTTPError as e:
                if e.code == 416 and offset:  # range not satisfiable: the .part is already complete
                    return transferred, first_offset
                raise LivecellError(f"{url}: server answered HTTP {e.code} {e.reason}") from None
            except (urllib.error.URLError, OSError) as e:
                reason = getattr(e, "reason", e)
                if attempt < retries:
                    attempt += 1
                    time.sleep(min(2.0**attempt * 0.1, 5.0))
                    continue
                raise LivecellError(f"{url}: cannot connect ({reason})") from None
            with resp:
                status = resp.status
                if offset and status == 200:  # the server ignored Range: start again from zero
                    offset = 0
                    mode = "wb"
                elif offset and status == 206:
                    cr = resp.headers.get("Content-Range", "")
                    if not cr.startswith(f"bytes {offset}-"):
                        raise LivecellError(f"{url}: server sent an unexpected range ({cr or 'none'})")
                    mode = "ab"
                else:
                    mode = "wb"
                length = resp.headers.get("Content-Length")
                expected = int(length) if length and length.isdigit() else None
                total = offset + expected if expected is not None else None
                if bar is None:
                    bar = ProgressBar(
                        progress,
                        part.name[:-5],
                        total,
                        unit="B",
                        initial=offset,
                        unit_scale=True,
                        unit_divisor=1024,
                    )
                else:
                    bar.reset(total, offset)
                got = 0
                try:
                    with open(part, mode) as f:
                        while True:
                            buf = resp.read(chunk)
                            if not buf:
                                break
                            f.write(buf)
                            got += len(buf)
                            transferred += len(buf)
                            bar.update(len(buf))
                            if on_chunk is not None:
                                on_chunk(len(buf))
                    if expected is not None and got < expected:
                        raise _Interrupted(f"connection closed after {got:,} of {expected:,} bytes")
                except (_Interrupted, OSError, http.client.HTTPException) as e:
                    if isinstance(e, OSError) and e.errno == errno.ENOSPC:
                        raise LivecellError(f"{part}: disk full") from None
                    if attempt < retries:
                        attempt += 1
                        time.sleep(min(2.0**attempt * 0.1, 5.0))
                        continue
                    why = str(e) if isinstance(e, _Interrupted) else type(e).__name__
                    raise LivecellError(
                        f"{url}: transfer interrupted ({why}); {part.stat().st_size:,} bytes kept in "
                        f"{part.name}, run the command again to resume"
                    ) from None
            return transferred, first_offset
    finally:
        if bar is not None:
            bar.close()


def _looks_like_html(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(512).lstrip().lower()
    return head.startswith(b"<!doctype html") or head.startswith(b"<html") or head.startswith(b"<?xml")


def _check_declared_size(path: Path, z: zipfile.ZipFile, max_bytes: int | None) -> None:
    cap = max_bytes if max_bytes is not None else max_unzipped_bytes()
    total = sum(i.file_size for i in z.infolist())
    if total > cap:
        raise InputFileError(
            path,
            f"unpacks to {total:,} bytes, above the limit of {cap:,} (set ${ENV_MAX_UNZIPPED} to raise it)",
        )


def validate_zip(path: Path, max_bytes: int | None = None) -> None:
    """Raise InputFileError unless ``path`` is a complete zip whose members all pass their CRC
    and whose declared size is within ``max_bytes`` (default :func:`max_unzipped_bytes`)."""
    if _looks_like_html(path):
        raise InputFileError(path, "the server sent an HTML page, not a zip (wrong URL or mirror?)")
    try:
        with zipfile.ZipFile(path) as z:
            _check_declared_size(path, z, max_bytes)
            bad = z.testzip()
    except zipfile.BadZipFile as e:
        raise InputFileError(path, f"not a complete zip file ({e}); delete it and download again") from None
    except (OSError, EOFError) as e:
        raise InputFileError(path, f"cannot read zip ({e})") from None
    if bad is not None:
        raise InputFileError(
            path, f"zip member {bad} is corrupt (CRC mismatch); delete it and download again"
        )


def validate_json(path: Path) -> None:
    """Raise InputFileError unless ``path`` is a complete COCO json (streamed; lean on 1 GB files)."""
    from .convert import scan_coco

    scan_coco(path)


def extract_zip(zip_path: Path, out: Path, max_bytes: int | None = None) -> list[Path]:
    """Extract ``zip_path`` into ``out`` atomically: into a temporary folder, then moved into place.

    Top-level entries that already exist are merged folder by folder; an entry whose kind differs
    from what is already there (a file where a folder is, or the reverse) is refused before anything
    is moved, so nothing existing is deleted. Extraction stops when more than ``max_bytes`` (default
    :func:`max_unzipped_bytes`) come out, whatever the zip's headers declare. Returns the top-level paths.
    """
    cap = max_bytes if max_bytes is not None else max_unzipped_bytes()
    tmp = out / f".{zip_path.name}.extracting"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        with zipfile.ZipFile(zip_path) as z:
            root = tmp.resolve()
            for info in z.infolist():
                target = (tmp / info.filename).resolve()
                if root not in target.parents and target != root:
                    raise InputFileError(zip_path, f"unsafe path in zip: {info.filename}")
            _check_declared_size(zip_path, z, cap)
            total = 0
            for info in z.infolist():
                target = (tmp / info.filename).resolve()
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                try:
                    with z.open(info) as src, open(target, "wb") as dst:
                        while buf := src.read(1 << 20):
                            total += len(buf)
                            if total > cap:
                                raise InputFileError(
                                    zip_path,
                                    f"unpacks to more than {cap:,} bytes (set ${ENV_MAX_UNZIPPED} to raise the limit)",
                                )
                            dst.write(buf)
                except OSError as e:  # a full disk while unpacking: named, and nothing moved into place
                    from ..errors import OutputFileError
                    from ..io import describe_os_error

                    raise OutputFileError(target, f"cannot be written ({describe_os_error(e)})") from None
        entries = [e for e in sorted(tmp.iterdir()) if e.name != "__MACOSX"]
        for entry in entries:
            _check_merge(zip_path, entry, out / entry.name, entry.name)
        tops = []
        for entry in entries:
            _merge_move(entry, out / entry.name)
            tops.append(out / entry.name)
        return tops
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _check_merge(zip_path: Path, src: Path, dst: Path, rel: str) -> None:
    """Refuse a merge that would replace a folder by a file or a file by a folder."""
    if not dst.exists() and not dst.is_symlink():
        return
    if src.is_dir():
        if not dst.is_dir():
            raise InputFileError(
                zip_path, f"{rel} is a folder in the zip but {dst} is a file; not replacing it"
            )
        for child in src.iterdir():
            _check_merge(zip_path, child, dst / child.name, f"{rel}/{child.name}")
    elif dst.is_dir():
        raise InputFileError(zip_path, f"{rel} is a file in the zip but {dst} is a folder; not replacing it")


def _merge_move(src: Path, dst: Path) -> None:
    if src.is_dir() and dst.is_dir():
        for child in src.iterdir():
            _merge_move(child, dst / child.name)
    else:
        os.replace(src, dst)


def _marker(out: Path, item: Item) -> Path:
    return out / _DONE_DIR / (item.rel.replace("/", "__") + ".done")


def download(
    out: str | os.PathLike[str],
    what: Iterable[str] = DEFAULT_GROUPS,
    base_url: str | None = None,
    keep_zip: bool = False,
    retries: int = 5,
    timeout: float = 60.0,
    progress: Progress = False,
    sha256_file: str | os.PathLike[str] | None = None,
    max_unzipped: int | None = None,
) -> list[DownloadResult]:
    """Download (resume, verify, validate, unzip) the requested LIVECell files into ``out``.

    Items already complete are skipped; each item's outcome is logged (``log.info``). See the
    module docstring for the layout and for the integrity checks: ``sha256_file`` (default ``$LIVECELL_SHA256``) holds expected digests,
    ``max_unzipped`` caps what ``images.zip`` may unpack to.
    Raises :class:`LivecellError` / :class:`InputFileError` with one-line messages.
    """
    from ..io import write_text_atomic

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputFileError(out, "output path exists and is not a folder")
    base = resolve_base_url(base_url)
    check_url(base)
    items = catalog(what)
    sums_path = sha256_file or os.environ.get(ENV_SHA256) or None
    user_sums = read_sha256_file(sums_path) if sums_path else {}
    cap = max_unzipped if max_unzipped is not None else max_unzipped_bytes()

    def verify(part: Path, item: Item, dest: Path) -> str:
        """Check the digest (when one is known); return it. It is recorded in SHA256SUMS only once
        the file passed every check (a refused download's digest must never be pinned)."""
        digest = sha256_of(part)
        expected = expected_sha256(item, user_sums)
        if expected is not None and digest != expected:
            with contextlib.suppress(OSError):
                part.unlink()
            raise InputFileError(
                dest,
                f"SHA-256 mismatch (expected {expected}, got {digest}); the download was removed, "
                "run again to re-download",
            )
        if expected is None:
            log.info(f"{item.rel}: no known SHA-256 to check against; got {digest}")
        return digest

    results: list[DownloadResult] = []
    for item in items:
        url = urllib.parse.urljoin(base, item.rel)
        dest = out / item.rel
        marker = _marker(out, item)
        if item.kind == "zip":
            if marker.is_file():
                results.append(DownloadResult(item, out, "skipped"))
                log.info(f"skipped {item.rel} (already downloaded and extracted)")
                continue
            digest: str | None = None
            if dest.is_file():  # downloaded and validated earlier (kept zip), not extracted yet
                n, first = 0, 0
            else:
                n, first = fetch(url, dest, retries=retries, timeout=timeout, progress=progress)
                part = Path(str(dest) + ".part")
                digest = verify(part, item, dest)
                _validate_or_discard(part, lambda q: validate_zip(q, cap))
                os.replace(part, dest)
            log.info(f"extracting {item.rel} ...")
            extract_zip(dest, out, cap)
            if digest is not None:  # valid and unpacked: now it may be pinned
                _record_sha256(out, item, digest)
            write_text_atomic(marker, json.dumps({"url": url, "bytes": dest.stat().st_size}) + "\n")
            if not keep_zip:
                dest.unlink()
            results.append(DownloadResult(item, out, "downloaded", n, first))
            log.info(f"downloaded {item.rel}" + (f" (resumed at {first:,} bytes)" if first else ""))
        else:
            if dest.is_file():
                results.append(DownloadResult(item, dest, "skipped"))
                log.info(f"skipped {item.rel} (already complete)")
                continue
            n, first = fetch(url, dest, retries=retries, timeout=timeout, progress=progress)
            part = Path(str(dest) + ".part")
            digest = verify(part, item, dest)
            _validate_or_discard(part, validate_json)
            os.replace(part, dest)
            _record_sha256(out, item, digest)
            results.append(DownloadResult(item, dest, "downloaded", n, first))
            log.info(f"downloaded {item.rel}" + (f" (resumed at {first:,} bytes)" if first else ""))
    return results


def _record_sha256(out: Path, item: Item, digest: str) -> None:
    """Add ``item``'s digest to ``OUT/.livecell_download/SHA256SUMS`` (sha256sum format)."""
    from ..io import atomic_path

    path = out / _DONE_DIR / SUMS_FILE
    sums = read_sha256_file(path) if path.is_file() else {}
    sums[item.rel] = digest
    with atomic_path(path) as tmp:
        tmp.write_text("".join(f"{d}  {rel}\n" for rel, d in sorted(sums.items())))


def _validate_or_discard(part: Path, check: Callable[[Path], None]) -> None:
    """Validate a finished .part; on failure delete it (a resume cannot repair it) and re-raise."""
    try:
        check(part)
    except InputFileError as e:
        with contextlib.suppress(OSError):
            part.unlink()
        final = part.with_name(part.name[: -len(".part")])
        problem = e.problem.replace("; re-download it", "").replace("; delete it and download again", "")
        raise InputFileError(
            final, f"download is invalid: {problem}; the partial file was removed, run again to re-download"
        ) from None
