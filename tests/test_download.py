"""Tests of `livecell-seg download` against a local HTTP server on 127.0.0.1 (no network)."""

from __future__ import annotations

import io
import json
import socket
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from livecell_seg.cli import main
from livecell_seg.data import sample_paths
from livecell_seg.data.download import catalog, download, resolve_base_url
from livecell_seg.data.synth import synthetic_coco
from livecell_seg.errors import InputFileError, LivecellError


class _Server:
    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.cut: dict[str, list[int]] = {}  # path -> byte counts after which successive requests break
        self.ignore_range: set[str] = set()
        self.log: list[tuple[str, str | None]] = []
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # silence
                pass

            def do_GET(self) -> None:  # noqa: N802
                path = self.path.split("?")[0]
                rng = self.headers.get("Range")
                with server.lock:
                    server.log.append((path, rng))
                    cuts = server.cut.get(path)
                    cut = cuts.pop(0) if cuts else None
                data = server.files.get(path)
                if data is None:
                    self.send_error(404, "Not Found")
                    return
                start = 0
                if rng and path not in server.ignore_range:
                    start = int(rng.split("=")[1].split("-")[0])
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
                if cut is not None:
                    self.wfile.write(body[:cut])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/LIVECell_dataset_2021/"

    def put(self, rel: str, data: bytes) -> None:
        self.files["/LIVECell_dataset_2021/" + rel] = data

    def requests_for(self, rel: str) -> list[str | None]:
        return [r for p, r in self.log if p == "/LIVECell_dataset_2021/" + rel]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _zip_bytes() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as z:
        z.writestr(
            "images/livecell_train_val_images/A172/A172_Phase_C7_1_00d00h00m_1.tif", b"II*\x00" + bytes(5000)
        )
        z.writestr(
            "images/livecell_test_images/BV2/BV2_Phase_A1_1_00d00h00m_1.tif",
            b"II*\x00" + bytes(range(256)) * 40,
        )
    return buf.getvalue()


@pytest.fixture
def server() -> Iterator[_Server]:
    s = _Server()
    js, _ = sample_paths()
    s.put("images.zip", _zip_bytes())
    s.put("annotations/LIVECell/livecell_coco_val.json", js.read_bytes())
    s.put("annotations/LIVECell/livecell_coco_train.json", json.dumps(synthetic_coco(2, seed=1)).encode())
    s.put("annotations/LIVECell/livecell_coco_test.json", json.dumps(synthetic_coco(1, seed=2)).encode())
    yield s
    s.close()


def test_catalog_and_base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    assert [i.rel for i in catalog(["images"])] == ["images.zip"]
    assert len(catalog(["annotations"])) == 3
    assert len(catalog(["single-cell-types"])) == 24
    assert "annotations/LIVECell_single_cells/shsy5y/val.json" in [
        i.rel for i in catalog(["single-cell-types"])
    ]
    assert len(catalog(["size-splits"])) == 5
    with pytest.raises(LivecellError, match="unknown --what entry 'imgs'"):
        catalog(["imgs"])
    monkeypatch.delenv("LIVECELL_BASE_URL", raising=False)
    assert resolve_base_url().startswith("https://livecell-dataset.s3.eu-central-1.amazonaws.com/")
    monkeypatch.setenv("LIVECELL_BASE_URL", "http://mirror.example/x")
    assert resolve_base_url() == "http://mirror.example/x/"
    assert resolve_base_url("http://other/") == "http://other/"


def test_download_resumes_within_run_and_skips_when_done(server: _Server, tmp_path: Path) -> None:
    val = "annotations/LIVECell/livecell_coco_val.json"
    server.cut["/LIVECell_dataset_2021/" + val] = [100_000, 250_000]  # two broken transfers, then complete
    server.cut["/LIVECell_dataset_2021/images.zip"] = [3000]
    res = download(tmp_path, ["images", "annotations"], base_url=server.url, retries=3)
    assert [r.status for r in res] == ["downloaded"] * 4
    assert server.requests_for(val) == [None, "bytes=100000-", "bytes=350000-"]
    assert server.requests_for("images.zip") == [None, "bytes=3000-"]
    assert (tmp_path / val).read_bytes() == server.files["/LIVECell_dataset_2021/" + val]
    tif = tmp_path / "images" / "livecell_train_val_images" / "A172" / "A172_Phase_C7_1_00d00h00m_1.tif"
    assert tif.read_bytes() == b"II*\x00" + bytes(5000)
    assert (tmp_path / "images" / "livecell_test_images" / "BV2").is_dir()
    assert not (tmp_path / "images.zip").exists()  # not kept by default
    assert not list(tmp_path.rglob("*.part")) and not list(tmp_path.glob(".*extracting"))
    n = len(server.log)
    res2 = download(tmp_path, ["images", "annotations"], base_url=server.url)
    assert [r.status for r in res2] == ["skipped"] * 4 and len(server.log) == n  # no request at all


def test_cli_interrupted_then_resumed_in_next_run(
    server: _Server, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    train = "annotations/LIVECell/livecell_coco_train.json"
    full = server.files["/LIVECell_dataset_2021/" + train]
    server.cut["/LIVECell_dataset_2021/" + train] = [len(full) // 3]
    monkeypatch.setenv("LIVECELL_BASE_URL", server.url)  # the env var picks the mirror
    rc = main(["download", "--out", str(tmp_path), "--what", "annotations", "--retries", "0", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert "transfer interrupted" in err and "run the command again to resume" in err and train in err
    part = tmp_path / (train + ".part")
    assert part.stat().st_size == len(full) // 3
    assert not (tmp_path / train).exists()  # never a partial file under the final name
    rc = main(["download", "--out", str(tmp_path), "--what", "annotations", "--quiet"])
    err = capsys.readouterr().err  # the per-file lines are logged: stderr
    assert rc == 0 and f"downloaded {train} (resumed at {len(full) // 3:,} bytes)" in err.splitlines()
    assert server.requests_for(train)[-1] == f"bytes={len(full) // 3}-"
    assert (tmp_path / train).read_bytes() == full and not part.exists()


def test_server_ignoring_range_restarts_cleanly(server: _Server, tmp_path: Path) -> None:
    test = "annotations/LIVECell/livecell_coco_test.json"
    full = server.files["/LIVECell_dataset_2021/" + test]
    server.ignore_range.add("/LIVECell_dataset_2021/" + test)
    server.cut["/LIVECell_dataset_2021/" + test] = [500]
    download(tmp_path, ["annotations"], base_url=server.url, retries=2)
    assert server.requests_for(test) == [None, "bytes=500-"]  # answered with 200: rewritten from 0
    assert (tmp_path / test).read_bytes() == full


def test_keep_zip_and_complete_part_416(server: _Server, tmp_path: Path) -> None:
    data = server.files["/LIVECell_dataset_2021/images.zip"]
    (tmp_path / "images.zip.part").write_bytes(data)  # a finished transfer that was never renamed
    res = download(tmp_path, ["images"], base_url=server.url, keep_zip=True)
    assert res[0].status == "downloaded" and res[0].bytes == 0
    assert (tmp_path / "images.zip").read_bytes() == data
    assert (tmp_path / "images" / "livecell_test_images" / "BV2").is_dir()


def test_html_page_corrupt_zip_and_404_fail_cleanly(
    server: _Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    val = "annotations/LIVECell/livecell_coco_val.json"
    server.put(val, b"<!DOCTYPE html><html><body>Access Denied</body></html>")
    with pytest.raises(InputFileError, match="HTML page") as ei:
        download(tmp_path / "a", ["annotations"], base_url=server.url)
    assert "livecell_coco_val.json" in str(ei.value)
    assert not (tmp_path / "a" / val).exists() and not list((tmp_path / "a").rglob("*.part"))
    # a zip whose member data is damaged: CRC mismatch
    z = bytearray(server.files["/LIVECell_dataset_2021/images.zip"])
    z[200] ^= 0xFF
    server.put("images.zip", bytes(z))
    rc = main(
        ["download", "--out", str(tmp_path / "b"), "--what", "images", "--base-url", server.url, "--quiet"]
    )
    err = capsys.readouterr().err.splitlines()  # logged notes, then the one-line error
    assert rc == 2 and err[-1].startswith("livecell-seg download: error: ") and "images.zip" in err[-1]
    assert sum("error" in line for line in err) == 1 and "Traceback" not in "".join(err)
    assert not (tmp_path / "b" / "images").exists() and not (tmp_path / "b" / "images.zip").exists()
    # missing on the server
    rc = main(["download", "--out", str(tmp_path / "c"), "--what", "size-splits", "--base-url", server.url])
    err = capsys.readouterr().err
    assert rc == 2 and "HTTP 404" in err and "0_train2percent.json" in err
    rc = main(
        ["download", "--out", str(tmp_path / "c"), "--base-url", "http://127.0.0.1:9/", "--retries", "0"]
    )
    assert rc == 2 and "cannot connect" in capsys.readouterr().err


def test_sha256_is_verified_recorded_and_the_unzipped_size_capped(
    server: _Server, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import hashlib

    data = server.files["/LIVECell_dataset_2021/images.zip"]
    good = hashlib.sha256(data).hexdigest()
    sums = tmp_path / "sums.txt"
    sums.write_text(f"{'0' * 64}  images.zip\n")
    rc = main(["download", "--out", str(tmp_path / "a"), "--what", "images", "--base-url", server.url,
               "--sha256", str(sums), "--quiet"])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 2 and "SHA-256 mismatch" in err and good in err
    assert not list((tmp_path / "a").rglob("images*"))  # the bad download is gone, nothing extracted
    monkeypatch.setenv("LIVECELL_SHA256", str(sums))  # the environment variable works the same way
    sums.write_text(f"{good}  images.zip\n")
    assert main(["download", "--out", str(tmp_path / "a"), "--what", "images", "--base-url", server.url]) == 0
    assert (tmp_path / "a" / "images" / "livecell_test_images" / "BV2").is_dir()
    monkeypatch.delenv("LIVECELL_SHA256")
    # no digest known: downloaded, and its digest recorded for pinning
    assert main(["download", "--out", str(tmp_path / "b"), "--what", "images", "--base-url", server.url]) == 0
    assert (
        "images.zip: no known SHA-256 to check against; got " + good in capsys.readouterr().err.splitlines()
    )
    assert (tmp_path / "b" / ".livecell_download" / "SHA256SUMS").read_text() == f"{good}  images.zip\n"
    # a zip that would unpack to more than the cap is refused before anything is extracted
    rc = main(["download", "--out", str(tmp_path / "c"), "--what", "images", "--base-url", server.url,
               "--max-unzipped-gb", str(1000 / (1 << 30))])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 2 and "unpacks to" in err and "above the limit of 1,000" in err
    assert not (tmp_path / "c" / "images").exists()
    # ... and the digest of a zip it refused is never recorded as one to pin (issue 22)
    assert not (tmp_path / "c" / ".livecell_download" / "SHA256SUMS").exists()
    # nor that of a json that is not valid COCO
    server.files["/LIVECell_dataset_2021/annotations/LIVECell/livecell_coco_train.json"] = b'{"images": 1}'
    rc = main(["download", "--out", str(tmp_path / "d"), "--what", "annotations", "--base-url", server.url,
               "--retries", "0"])  # fmt: skip
    assert rc == 2 and "download is invalid" in capsys.readouterr().err
    sums_d = tmp_path / "d" / ".livecell_download" / "SHA256SUMS"
    assert "livecell_coco_train.json" not in (sums_d.read_text() if sums_d.exists() else "")
