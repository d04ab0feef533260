"""A release archive fetched over HTTP(S), verified, unpacked safely, then read as Spider or BIRD.

Each step leaves something usable when a later one fails: the download resumes from its `.part`
file, the archive gets its final name only once its sha256 matches, and the extracted tree
appears only when complete. All of it sits under `work_dir/<sha256 prefix>/`, so a rerun with
the same archive downloads nothing and a changed archive never resumes a stale file.
"""

from __future__ import annotations

import hashlib
import logging
import os
import posixpath
import stat
import tarfile
import time
import zipfile
from pathlib import Path, PureWindowsPath
from urllib.parse import unquote, urlparse

import requests
from tqdm import tqdm

from pipesql.io import DataError, atomic_path
from pipesql.params.download import UrlDataParams
from pipesql.sources import bird, spider
from pipesql.sources.raw import Example

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 16
# answers worth another attempt; any other non-2xx (404, 403) will not improve by waiting
RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
RETRY_ERRORS = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,  # the connection dropped mid-body
)
READERS = {"spider": spider.read_spider, "bird": bird.read_bird}
SPLIT_FILES = {"spider": tuple(spider.SPLITS), "bird": tuple(bird.SPLITS)}


def fetch_url_dataset(
    params: UrlDataParams, work_dir: Path
) -> tuple[list[Example], dict[str, Path]]:
    """Download, verify and extract `params.url` under `work_dir`, then read it as `params.layout`.

    The returned database paths point into `work_dir`, which must outlive the call (write_raw
    copies them).
    """
    if not (params.url and params.sha256):
        raise DataError("download.data.url: url and sha256 are both required")
    cache_dir = Path(work_dir) / params.sha256.lower()[:16]
    extracted = cache_dir / "extracted"
    if not extracted.is_dir():  # present only once complete, from an archive with this sha256
        archive = download_file(
            params.url,
            cache_dir / _archive_name(params.url),
            params.sha256,
            retries=params.retries,
            timeout_s=params.timeout_s,
        )
        safe_extract(archive, extracted)
    return READERS[params.layout](_release_root(extracted, params.layout))


def download_file(
    url: str,
    dest: Path,
    sha256: str,
    retries: int = 5,
    timeout_s: float = 60.0,
    backoff_s: float = 1.0,
) -> Path:
    """Fetch `url` to `dest`, resuming `dest.part` across attempts and runs.

    Attempt k+1 waits backoff_s * 2**k. `dest` appears (by an atomic rename) only once the sha256
    matches; on a mismatch the partial file is removed, since resuming from wrong bytes would
    fail forever. A `dest` already present with the right hash is not fetched again.
    """
    dest = Path(dest)
    expected = sha256.lower()
    if urlparse(url).scheme not in ("http", "https"):
        raise DataError(f"{url}: only http:// and https:// URLs are supported")
    if dest.is_file() and _sha256(dest) == expected:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    for attempt in range(retries + 1):
        try:
            _fetch(url, part, timeout_s)
            break
        except _RetryableError as e:
            if attempt == retries:
                raise DataError(f"{url}: download failed after {attempt + 1} attempts: {e}") from e
            delay_s = backoff_s * 2**attempt
            log.warning("%s: %s; retrying in %.1f s", url, e, delay_s)
            time.sleep(delay_s)
    actual = _sha256(part)
    if actual != expected:
        part.unlink()
        raise DataError(
            f"{url}: sha256 mismatch: expected {expected}, got {actual}; removed {part}. "
            "Check download.data.url.sha256 against the release."
        )
    os.replace(part, dest)
    return dest


def safe_extract(archive: Path, target: Path) -> Path:
    """Unpack a zip or tar (plain, gz, bz2, xz) into `target`, which appears only when complete.

    A release archive is data from the internet: every entry is checked before anything is
    written, and one absolute path, `..` escape, link or device refuses the whole archive.
    """
    archive, target = Path(archive), Path(target)
    bar = {"desc": f"extract {archive.name}", "unit": "file"}
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
            for info in infos:
                _check_entry(archive, info.filename, stat.S_ISLNK(info.external_attr >> 16), False)
            with atomic_path(target) as tmp:
                tmp.mkdir()
                for info in tqdm(infos, **bar):
                    zf.extract(info, tmp)
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tf:
            members = tf.getmembers()
            for m in members:
                _check_entry(archive, m.name, m.issym() or m.islnk(), not (m.isfile() or m.isdir()))
            with atomic_path(target) as tmp:
                tmp.mkdir()
                # extractall, not extract per member: it sets directory modes last, so a
                # read-only directory does not block the files inside it
                tf.extractall(tmp, members=tqdm(members, **bar), filter="data")
    else:
        raise DataError(f"{archive}: not a zip or tar archive")
    return target


class _RetryableError(Exception):
    """A failure another attempt may not repeat: dropped connection, timeout, 5xx."""


def _fetch(url: str, part: Path, timeout_s: float) -> None:
    """One attempt: continue `part` from its size, or start over when the server ignores Range."""
    offset = part.stat().st_size if part.exists() else 0
    # identity: Range offsets count the bytes as sent, a transparently gunzipped body would not
    headers = {"Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        with requests.get(url, headers=headers, stream=True, timeout=timeout_s) as response:
            status = response.status_code
            if status == 416 and offset:
                return  # `part` holds every byte already; the checksum says if they are right
            if status in RETRY_STATUS:
                raise _RetryableError(f"HTTP {status} {response.reason}")
            if status not in (200, 206):
                raise DataError(f"{url}: HTTP {status} {response.reason}")
            if status == 206 and not response.headers.get("Content-Range", "").startswith(
                f"bytes {offset}-"
            ):
                part.unlink()  # a range we did not ask for cannot be appended: start over
                raise _RetryableError(
                    f"asked for bytes from {offset}, "
                    f"got Content-Range {response.headers.get('Content-Range')!r}"
                )
            if status == 200:
                offset = 0  # the server ignored Range and sends the whole file
            length = response.headers.get("Content-Length")
            total = offset + int(length) if length else None
            with part.open("ab" if offset else "wb") as f, tqdm(
                total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
                desc=part.name,
            ) as progress:
                for chunk in response.iter_content(CHUNK_BYTES):
                    f.write(chunk)
                    progress.update(len(chunk))
    except RETRY_ERRORS as e:
        raise _RetryableError(str(e)) from e


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _check_entry(archive: Path, name: str, is_link: bool, is_special: bool) -> None:
    """Refuse an entry that could write outside the target directory, naming it."""
    if is_link:
        reason = "is a link"
    elif is_special:
        reason = "is not a regular file or directory"
    elif name.startswith(("/", "\\")) or PureWindowsPath(name).drive:
        reason = "is an absolute path"
    elif posixpath.normpath(name).split("/")[0] == "..":
        reason = "escapes the target directory"
    else:
        return
    raise DataError(f"{archive}: refusing entry {name!r}: it {reason}; nothing was extracted")


def _archive_name(url: str) -> str:
    """The URL's last path segment, decoded, as a file name that stays inside its folder."""
    name = Path(unquote(posixpath.basename(urlparse(url).path))).name
    return name if name not in ("", ".", "..") else "archive"


def _release_root(extracted: Path, layout: str) -> Path:
    """`extracted` itself or its one subdirectory holding split files: archives usually wrap the
    release in a folder (`spider_data/`)."""
    files = SPLIT_FILES[layout]
    subdirs = sorted(p for p in extracted.iterdir() if p.is_dir())
    roots = [d for d in [extracted, *subdirs] if any((d / f).is_file() for f in files)]
    if not roots:
        raise DataError(
            f"{extracted}: no {layout} release at the top or one folder down; "
            f"expected one of {', '.join(files)} (is download.data.url.layout right?)"
        )
    if len(roots) > 1 and roots[0] != extracted:
        raise DataError(f"{extracted}: several {layout} releases: {', '.join(map(str, roots))}")
    return roots[0]
