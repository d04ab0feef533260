"""The url source against a local HTTP server that supports Range and misbehaves on demand."""

from __future__ import annotations

import hashlib
import http.server
import io
import stat
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pipesql.io import DataError
from pipesql.params.download import UrlDataParams
from pipesql.sources import url as url_source
from pipesql.sources.url import download_file, fetch_url_dataset, safe_extract

PAYLOAD = bytes(range(256)) * 1024  # 256 KiB: several chunks, so a drop lands mid-transfer


@dataclass
class ServerState:
    files: dict[str, bytes] = field(default_factory=dict)
    drop_after: int | None = None     # next response stops after this many body bytes
    failures_left: int = 0            # answer this many requests with 503
    ignore_range: bool = False        # answer 200 with the whole file, like some servers do
    requests: list[dict[str, str]] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)


class _Handler(http.server.BaseHTTPRequestHandler):
    timeout = 5  # a stuck client cannot hold the single-threaded server

    def do_GET(self) -> None:
        state: ServerState = self.server.state  # type: ignore[attr-defined]
        state.requests.append(dict(self.headers))
        body = state.files.get(self.path)
        if body is None:
            return self._status(404)
        if state.failures_left:
            state.failures_left -= 1
            return self._status(503)
        start = 0
        requested = self.headers.get("Range")
        if requested and not state.ignore_range:
            start = int(requested.removeprefix("bytes=").removesuffix("-"))
            if start >= len(body):
                return self._status(416, {"Content-Range": f"bytes */{len(body)}"})
            state.statuses.append(206)
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            state.statuses.append(200)
            self.send_response(200)
        payload = body[start:]
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if state.drop_after is not None:
            payload, state.drop_after = payload[: state.drop_after], None
        self.wfile.write(payload)  # HTTP/1.0: the connection closes after each response

    def _status(self, code: int, headers: dict[str, str] | None = None) -> None:
        self.server.state.statuses.append(code)  # type: ignore[attr-defined]
        self.send_response(code)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[tuple[str, ServerState]]:
    """(base url, state) of a server on 127.0.0.1, shut down and joined after the test."""
    httpd = http.server.HTTPServer(("127.0.0.1", 0), _Handler)
    httpd.state = ServerState()  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}", httpd.state  # type: ignore[attr-defined]
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)
    assert not thread.is_alive()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def zip_tree(root: Path, prefix: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for path in sorted(root.rglob("*")):
            zf.write(path, f"{prefix}{path.relative_to(root)}")
    return buf.getvalue()


def tar_gz_tree(root: Path, arcname: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        tf.add(root, arcname=arcname)
    return buf.getvalue()


# ---------------------------------------------------------------- fetch_url_dataset


def test_zip_spider_release_nested_one_folder_down(tmp_path, server, spider_release) -> None:
    base, state = server
    archive = zip_tree(spider_release(tmp_path / "release"), prefix="spider_data/")
    state.files["/spider.zip"] = archive
    params = UrlDataParams(url=f"{base}/spider.zip", sha256=sha(archive).upper(), layout="spider")

    examples, databases = fetch_url_dataset(params, tmp_path / "work")

    assert len(examples) == 5 and {e.split for e in examples} == {"train", "dev", "test"}
    assert sorted(databases) == ["concert", "flights", "pets"]
    assert all(p.is_file() and (tmp_path / "work") in p.parents for p in databases.values())
    assert state.requests[0]["Accept-Encoding"] == "identity"

    again, _ = fetch_url_dataset(params, tmp_path / "work")  # cached: no second request
    assert again == examples and len(state.requests) == 1


def test_tar_gz_bird_release_at_top_level(tmp_path, server, bird_release) -> None:
    base, state = server
    archive = tar_gz_tree(bird_release(tmp_path / "release"), arcname=".")
    state.files["/bird/dev%20set.tar.gz"] = archive
    params = UrlDataParams(url=f"{base}/bird/dev%20set.tar.gz", sha256=sha(archive), layout="bird")

    examples, databases = fetch_url_dataset(params, tmp_path / "work")

    assert [e.id for e in examples] == ["bird-train-00000", "bird-dev-00000", "bird-dev-00007"]
    assert sorted(databases) == ["school", "shop"]
    assert (tmp_path / "work" / sha(archive)[:16] / "dev set.tar.gz").is_file()


def test_archive_without_release_names_expected_files(tmp_path, server) -> None:
    base, state = server
    (tmp_path / "release/docs/deep").mkdir(parents=True)
    (tmp_path / "release/docs/deep/train_spider.json").write_text("[]")  # two folders down
    archive = zip_tree(tmp_path / "release", prefix="")
    state.files["/docs.zip"] = archive
    params = UrlDataParams(url=f"{base}/docs.zip", sha256=sha(archive), layout="spider")
    with pytest.raises(DataError, match=r"extracted: no spider release at the top or one folder "
                                        r"down; expected one of train_spider\.json"):
        fetch_url_dataset(params, tmp_path / "work")


# ---------------------------------------------------------------- download_file


def test_wrong_checksum_names_both_hashes_and_removes_partial(tmp_path, server) -> None:
    base, state = server
    state.files["/a.zip"] = PAYLOAD
    dest = tmp_path / "a.zip"
    with pytest.raises(DataError) as e:
        download_file(f"{base}/a.zip", dest, "0" * 64, retries=0)
    assert f"expected {'0' * 64}, got {sha(PAYLOAD)}" in str(e.value)
    assert list(tmp_path.iterdir()) == []


def test_interrupted_transfer_resumes_with_range(tmp_path, server) -> None:
    base, state = server
    state.files["/a.zip"] = PAYLOAD
    state.drop_after = 100_000
    dest = download_file(f"{base}/a.zip", tmp_path / "a.zip", sha(PAYLOAD), backoff_s=0)

    assert dest.read_bytes() == PAYLOAD
    resumed_at = int(state.requests[1]["Range"].removeprefix("bytes=").removesuffix("-"))
    assert "Range" not in state.requests[0] and 0 < resumed_at <= 100_000  # what reached disk
    assert state.statuses == [200, 206]
    assert not (tmp_path / "a.zip.part").exists()


def test_server_answering_200_to_range_restarts(tmp_path, server) -> None:
    base, state = server
    state.files["/a.zip"] = PAYLOAD
    state.ignore_range = True
    (tmp_path / "a.zip.part").write_bytes(b"stale bytes of another attempt")
    dest = download_file(f"{base}/a.zip", tmp_path / "a.zip", sha(PAYLOAD), backoff_s=0)

    assert dest.read_bytes() == PAYLOAD
    assert state.requests[0]["Range"] == "bytes=30-" and state.statuses == [200]


def test_complete_partial_file_is_verified_not_refetched(tmp_path, server) -> None:
    base, state = server
    state.files["/a.zip"] = PAYLOAD
    (tmp_path / "a.zip.part").write_bytes(PAYLOAD)
    dest = download_file(f"{base}/a.zip", tmp_path / "a.zip", sha(PAYLOAD))
    assert dest.read_bytes() == PAYLOAD and state.statuses == [416]


def test_transient_errors_retried_with_exponential_backoff(tmp_path, server, monkeypatch) -> None:
    base, state = server
    state.files["/a.zip"] = PAYLOAD
    state.failures_left = 2
    sleeps: list[float] = []
    monkeypatch.setattr(url_source.time, "sleep", sleeps.append)
    dest = download_file(
        f"{base}/a.zip", tmp_path / "a.zip", sha(PAYLOAD), retries=3, backoff_s=0.5
    )

    assert dest.read_bytes() == PAYLOAD
    assert sleeps == [0.5, 1.0] and state.statuses == [503, 503, 200]


def test_retries_exhausted_names_url_and_attempts(tmp_path, server, monkeypatch) -> None:
    base, state = server
    state.files["/a.zip"] = PAYLOAD
    state.failures_left = 10
    monkeypatch.setattr(url_source.time, "sleep", lambda s: None)
    with pytest.raises(DataError, match=r"/a\.zip: download failed after 3 attempts: HTTP 503"):
        download_file(f"{base}/a.zip", tmp_path / "a.zip", sha(PAYLOAD), retries=2)


def test_not_found_is_not_retried(tmp_path, server) -> None:
    base, state = server
    with pytest.raises(DataError, match=r"/missing\.zip: HTTP 404"):
        download_file(f"{base}/missing.zip", tmp_path / "a.zip", sha(PAYLOAD), retries=3)
    assert state.statuses == [404]


# ---------------------------------------------------------------- safe_extract


def _zip_with(name: str, link: bool = False) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("release/ok.txt", b"fine")
        info = zipfile.ZipInfo(name)
        if link:
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, b"/etc/passwd" if link else b"evil")
    return buf.getvalue()


def _tar_with(name: str, kind: bytes = tarfile.REGTYPE) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for entry_name, entry_kind in (("release/ok.txt", tarfile.REGTYPE), (name, kind)):
            info = tarfile.TarInfo(entry_name)
            info.type = entry_kind
            data = b"evil" if entry_kind == tarfile.REGTYPE else b""
            info.size = len(data)
            if entry_kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
                info.linkname = "release/ok.txt"
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.mark.parametrize(
    ("archive", "entry", "reason"),
    [
        (_zip_with("../evil"), "../evil", "escapes the target directory"),
        (_zip_with("release/../../evil"), "release/../../evil", "escapes the target directory"),
        (_zip_with("/tmp/evil"), "/tmp/evil", "is an absolute path"),
        (_zip_with("release/link", link=True), "release/link", "is a link"),
        (_tar_with("../evil"), "../evil", "escapes the target directory"),
        (_tar_with("/tmp/evil"), "/tmp/evil", "is an absolute path"),
        (_tar_with("release/link", tarfile.SYMTYPE), "release/link", "is a link"),
        (_tar_with("release/hard", tarfile.LNKTYPE), "release/hard", "is a link"),
        (_tar_with("release/fifo", tarfile.FIFOTYPE), "release/fifo", "is not a regular file"),
    ],
    ids=["zip-parent", "zip-nested-parent", "zip-absolute", "zip-symlink", "tar-parent",
         "tar-absolute", "tar-symlink", "tar-hardlink", "tar-fifo"],
)
def test_unsafe_entry_refuses_whole_archive(
    tmp_path: Path, archive: bytes, entry: str, reason: str
) -> None:
    path = tmp_path / "release.archive"
    path.write_bytes(archive)
    with pytest.raises(DataError, match=rf"refusing entry '{entry}': it {reason}"):
        safe_extract(path, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["release.archive"]


def test_not_an_archive_is_named(tmp_path: Path) -> None:
    path = tmp_path / "page.html"
    path.write_text("<html>login required</html>")
    with pytest.raises(DataError, match=r"page\.html: not a zip or tar archive"):
        safe_extract(path, tmp_path / "out")
