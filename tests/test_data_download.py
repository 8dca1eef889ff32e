"""download.py: checksums, streamed downloads from 127.0.0.1, safe archive extraction."""

import hashlib
import io
import tarfile

import pytest

from hashcondense.data.download import (
    check_integrity,
    download_and_extract_archive,
    download_url,
    extract_archive,
)
from hashcondense.errors import HashCondenseError


def _tar(members, mode="w:gz"):
    """members: list of (TarInfo kwargs, data or None)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tar:
        for name, data, kind in members:
            info = tarfile.TarInfo(name)
            if kind == "file":
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            elif kind == "dir":
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif kind == "symlink":
                info.type = tarfile.SYMTYPE
                info.linkname = data
                tar.addfile(info)
    return buf.getvalue()


def test_check_integrity(tmp_path):
    path = tmp_path / "f.bin"
    assert not check_integrity(path)
    path.write_bytes(b"hello")
    assert check_integrity(path)
    assert check_integrity(path, md5=hashlib.md5(b"hello").hexdigest())
    assert check_integrity(path, sha256=hashlib.sha256(b"hello").hexdigest().upper())
    assert not check_integrity(path, md5="0" * 32)
    assert not check_integrity(path, md5=hashlib.md5(b"hello").hexdigest(), sha256="0" * 64)


def test_download_url_verifies_and_skips(server, tmp_path):
    served, base = server
    payload = bytes(range(256)) * 5000
    (served / "blob.bin").write_bytes(payload)
    md5 = hashlib.md5(payload).hexdigest()
    root = tmp_path / "dl"
    path = download_url(f"{base}/blob.bin", root, md5=md5)
    assert path == root / "blob.bin" and path.read_bytes() == payload
    (served / "blob.bin").unlink()  # a verified copy is reused without a request
    assert download_url(f"{base}/blob.bin", root, md5=md5) == path


def test_download_url_mismatch_deletes_partial(server, tmp_path):
    served, base = server
    (served / "blob.bin").write_bytes(b"x" * 1000)
    root = tmp_path / "dl"
    with pytest.raises(HashCondenseError) as err:
        download_url(f"{base}/blob.bin", root, md5="a" * 32)
    msg = str(err.value)
    assert "blob.bin" in msg and "a" * 32 in msg and hashlib.md5(b"x" * 1000).hexdigest() in msg
    assert "retry" in msg
    assert list(root.iterdir()) == []


def test_download_url_unreachable(tmp_path, monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    with pytest.raises(HashCondenseError, match="cannot download"):
        download_url("http://127.0.0.1:9/nothing.tar.gz", tmp_path, timeout=2)
    assert list(tmp_path.iterdir()) == []


def test_extract_and_download_archive(server, tmp_path):
    served, base = server
    archive = _tar([("pkg", None, "dir"), ("pkg/a.txt", b"A", "file"), ("pkg/sub/b.txt", b"B", "file")])
    (served / "pkg.tar.gz").write_bytes(archive)
    dest = download_and_extract_archive(
        f"{base}/pkg.tar.gz", tmp_path / "dl", md5=hashlib.md5(archive).hexdigest(), remove_finished=True
    )
    assert (dest / "pkg" / "a.txt").read_bytes() == b"A" and (
        dest / "pkg" / "sub" / "b.txt"
    ).read_bytes() == b"B"
    assert not (dest / "pkg.tar.gz").exists()
    assert not [p for p in dest.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize(
    "member, match",
    [
        (("/etc/evil.txt", b"x", "file"), "absolute path"),
        (("../evil.txt", b"x", "file"), "leaves its folder"),
        (("pkg/../../evil.txt", b"x", "file"), "leaves its folder"),
        (("pkg/link", "/etc/passwd", "symlink"), "link or special file"),
    ],
)
def test_extract_refuses_unsafe_members(tmp_path, member, match):
    archive = tmp_path / "bad.tar.gz"
    archive.write_bytes(_tar([("pkg/ok.txt", b"ok", "file"), member]))
    dest = tmp_path / "out"
    with pytest.raises(HashCondenseError, match=match):
        extract_archive(archive, dest)
    assert not (tmp_path / "evil.txt").exists()
    assert list(dest.iterdir()) == []  # nothing extracted, staging removed


def test_extract_corrupt_archive(tmp_path):
    archive = tmp_path / "bad.tar.gz"
    archive.write_bytes(_tar([("pkg/a.txt", b"A" * 10000, "file")])[:50])
    with pytest.raises(HashCondenseError, match="cannot extract archive .*download it again"):
        extract_archive(archive, tmp_path / "out")
