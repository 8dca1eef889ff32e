"""Fetch, verify and unpack dataset archives (torchvision `datasets/utils.py` habits).

Downloads stream into a temporary file beside the target and are renamed into place only after the
checksum matched, so a failed or interrupted download never leaves a file that looks complete.
Archives are unpacked into a temporary folder first and members are checked before anything is
written: absolute paths, `..` components, links and device files are refused.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path, PurePosixPath

from hashcondense.errors import HashCondenseError

__all__ = [
    "check_integrity",
    "default_root",
    "download_and_extract_archive",
    "download_url",
    "extract_archive",
    "file_digest",
]

log = logging.getLogger(__name__)

_CHUNK = 1 << 20
USER_AGENT = "hashcondense"


def default_root(name: str) -> Path:
    """Where a downloadable dataset lives when no root is given: $HASHCONDENSE_DATA/<name>."""
    base = os.environ.get("HASHCONDENSE_DATA") or "~/.cache/hashcondense"
    return Path(base).expanduser() / name


def file_digest(path: str | os.PathLike[str], algorithm: str = "md5") -> str:
    """Hex digest of a file, read in 1 MiB chunks."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def check_integrity(path: str | os.PathLike[str], md5: str | None = None, sha256: str | None = None) -> bool:
    """True if `path` is a file and matches every checksum given (none given: existence only)."""
    if not Path(path).is_file():
        return False
    if md5 is not None and file_digest(path, "md5") != md5.lower():
        return False
    if sha256 is not None and file_digest(path, "sha256") != sha256.lower():
        return False
    return True


def download_url(
    url: str,
    root: str | os.PathLike[str],
    filename: str | None = None,
    md5: str | None = None,
    timeout: float = 60.0,
) -> Path:
    """Download `url` to `root/filename` and verify its MD5; skip if a verified copy is there.

    Raises HashCondenseError on a network error or a checksum mismatch; no partial file is left.
    """
    root = Path(root).expanduser()
    filename = filename or PurePosixPath(urllib.parse.urlparse(url).path).name
    if not filename:
        raise HashCondenseError(f"cannot tell a file name from URL {url}; pass filename=")
    target = root / filename
    if check_integrity(target, md5):
        log.info("using already downloaded %s", target)
        return target
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HashCondenseError(
            f"cannot create download folder {root}: {exc}; choose a writable root"
        ) from None

    fd, tmp_name = tempfile.mkstemp(prefix=f".{filename}.", suffix=".part", dir=root)
    tmp = Path(tmp_name)
    try:
        actual = _stream(url, fd, filename, timeout)
        if md5 is not None and actual != md5.lower():
            raise HashCondenseError(
                f"downloaded file {filename} from {url} is corrupt: MD5 {actual}, expected {md5.lower()}; "
                f"retry the download, or fetch the file by hand into {root} and check its MD5"
            )
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    log.info("downloaded %s (MD5 %s)", target, actual)
    return target


def _stream(url: str, fd: int, filename: str, timeout: float) -> str:
    """Copy the response body of `url` into `fd`; return its MD5."""
    from tqdm.auto import tqdm

    md5 = hashlib.md5()
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(request, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            received = 0
            # Progress only when the size is known and progress is on; tqdm hides itself off a terminal.
            quiet = total is None or os.environ.get("HASHCONDENSE_PROGRESS", "1") == "0"
            with tqdm(
                total=total, unit="B", unit_scale=True, desc=filename, disable=True if quiet else None
            ) as bar:
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    md5.update(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
            if total is not None and received != total:
                raise HashCondenseError(
                    f"download of {filename} from {url} stopped after {received} of {total} bytes; retry"
                )
    except HashCondenseError:
        raise
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise HashCondenseError(
            f"cannot download {filename} from {url}: {reason}; check the network, or fetch the file by hand"
        ) from None
    return md5.hexdigest()


def _check_member(member: tarfile.TarInfo, archive: Path) -> None:
    name = member.name
    parts = PurePosixPath(name).parts
    if name.startswith(("/", "\\")) or PurePosixPath(name).is_absolute() or (parts and ":" in parts[0]):
        raise HashCondenseError(f"archive {archive} has a member with an absolute path ({name}); refusing it")
    if ".." in parts or ".." in name.replace("\\", "/").split("/"):
        raise HashCondenseError(
            f"archive {archive} has a member that leaves its folder ({name}); refusing it"
        )
    if not (member.isfile() or member.isdir()):
        raise HashCondenseError(
            f"archive {archive} has a link or special file ({name}); only plain files are extracted"
        )


def extract_archive(path: str | os.PathLike[str], dest: str | os.PathLike[str] | None = None) -> Path:
    """Unpack a tar archive (.tar, .tar.gz, .tgz, .tar.bz2, .tar.xz) into `dest` (default: its folder).

    Members are validated first (no absolute paths, no `..`, no links or devices), unpacked into a
    temporary folder inside `dest`, then moved into place file by file.
    """
    archive = Path(path)
    dest = Path(dest) if dest is not None else archive.parent
    try:
        dest.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".extract-", dir=dest))
    except OSError as exc:
        raise HashCondenseError(f"cannot write into {dest}: {exc}; choose a writable folder") from None
    try:
        try:
            with tarfile.open(archive, "r:*") as tar:
                members = tar.getmembers()
                for member in members:
                    _check_member(member, archive)
                if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4: the stdlib's own safety filter too
                    tar.extractall(staging, members=members, filter="data")
                else:  # pragma: no cover
                    tar.extractall(staging, members=members)
        except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
            raise HashCondenseError(
                f"cannot extract archive {archive}: {exc}; delete it and download it again"
            ) from None
        for src in sorted(staging.rglob("*")):
            rel = src.relative_to(staging)
            target = dest / rel
            if src.is_dir():
                target.mkdir(parents=True, exist_ok=True)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(src, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("extracted %s into %s", archive, dest)
    return dest


def download_and_extract_archive(
    url: str,
    download_root: str | os.PathLike[str],
    extract_root: str | os.PathLike[str] | None = None,
    filename: str | None = None,
    md5: str | None = None,
    remove_finished: bool = False,
) -> Path:
    """`download_url` then `extract_archive`; returns the extraction folder."""
    archive = download_url(url, download_root, filename, md5)
    dest = extract_archive(archive, extract_root if extract_root is not None else download_root)
    if remove_finished:
        archive.unlink()
    return dest
