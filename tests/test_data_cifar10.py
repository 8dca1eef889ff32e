"""CIFAR-10 loader on tiny archives built here in the official layouts, served from 127.0.0.1."""

import hashlib
import io
import os
import pickle
import struct
import tarfile

import numpy as np
import pytest

from hashcondense.data import load_dataset
from hashcondense.data.cifar10 import CIFAR10, RestrictedUnpickler, load_cifar10, restricted_load
from hashcondense.errors import HashCondenseError

PER_FILE = 20  # records per batch file: 2 per class
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


class TinyCIFAR10(CIFAR10):
    records_per_file = PER_FILE


# --------------------------------------------------------------------------------------------------
# builders of the official layouts
def make_batches(seed=0):
    """Six batches (5 train + test) of PER_FILE records: CHW uint8 pixels and labels 0..9."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(6):
        labels = rng.permutation(np.arange(PER_FILE) % 10).astype(np.uint8)
        chw = rng.integers(0, 256, size=(PER_FILE, 3, 32, 32), dtype=np.uint8)
        out.append((chw, labels))
    return out


def expected_pool(batches):
    images = np.concatenate([chw.transpose(0, 2, 3, 1) for chw, _ in batches])
    labels = np.concatenate([lab for _, lab in batches]).astype(np.int64)
    return images, labels


def _add(tar, name, data):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def binary_archive(batches):
    names = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, (chw, labels) in zip(names, batches, strict=True):
            records = np.concatenate([labels[:, None], chw.reshape(len(chw), -1)], axis=1)
            _add(tar, f"cifar-10-batches-bin/{name}", records.tobytes())
        _add(tar, "cifar-10-batches-bin/batches.meta.txt", ("\n".join(CLASSES) + "\n\n").encode())
        _add(tar, "cifar-10-batches-bin/readme.html", b"<html></html>")
    return buf.getvalue()


class Py2Pickler(pickle._Pickler):
    """Writes bytes as Python 2 `str` (BINSTRING), as the official Python-2-era batches do."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_str(self, obj):
        n = len(obj)
        if n < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([n]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", n) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str


def py2_pickle(obj):
    buf = io.BytesIO()
    Py2Pickler(buf, protocol=2).dump(obj)
    # numpy 1.x (which wrote the official files) names the module numpy.core.multiarray
    return buf.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")


def python_files(batches):
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    files = {}
    for name, (chw, labels) in zip(names, batches, strict=True):
        files[name] = py2_pickle(
            {
                b"batch_label": name.encode(),
                b"labels": [int(v) for v in labels],
                b"data": chw.reshape(len(chw), -1),
                b"filenames": [f"img_{i}.png".encode() for i in range(len(chw))],
            }
        )
    files["batches.meta"] = py2_pickle(
        {b"label_names": [c.encode() for c in CLASSES], b"num_cases_per_batch": PER_FILE, b"num_vis": 3072}
    )
    return files


def python_archive(files):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            _add(tar, f"cifar-10-batches-py/{name}", data)
    return buf.getvalue()


def tiny_python_class(files):
    md5 = {name: hashlib.md5(data).hexdigest() for name, data in files.items()}

    class TinyPy(TinyCIFAR10):
        py_train_list = tuple((f"data_batch_{i}", md5[f"data_batch_{i}"]) for i in range(1, 6))
        py_test_list = (("test_batch", md5["test_batch"]),)
        py_meta = ("batches.meta", md5["batches.meta"])

    return TinyPy


# --------------------------------------------------------------------------------------------------
def test_declared_release_checksums():
    assert CIFAR10.url == "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
    assert CIFAR10.tgz_md5 == "c32a1d4ab5d03f1284b67883e8d87530"
    assert CIFAR10.python_tgz_md5 == "c58f30108f718f92721af3b95e74349a"
    assert CIFAR10.bin_train_files[0] == "data_batch_1.bin" and CIFAR10.bin_test_files == ("test_batch.bin",)


def test_download_binary_release(server, tmp_path):
    served, base = server
    batches = make_batches()
    archive = binary_archive(batches)
    (served / "cifar-10-binary.tar.gz").write_bytes(archive)
    root = tmp_path / "root"
    md5 = hashlib.md5(archive).hexdigest()

    def fetch():
        return TinyCIFAR10(
            root,
            download=True,
            url=f"{base}/cifar-10-binary.tar.gz",
            md5=md5,
            query_per_class=2,
            train_per_class=3,
        ).retrieval()

    ds = fetch()
    images, labels = expected_pool(batches)
    np.testing.assert_array_equal(ds.images, images)
    np.testing.assert_array_equal(ds.labels, labels)
    assert (root / "cifar-10-binary.tar.gz").is_file() and (
        root / "cifar-10-batches-bin" / "test_batch.bin"
    ).is_file()
    assert ds.class_names == CLASSES and ds.topk == 5000 and ds.info["num_train_images"] == 5 * PER_FILE
    assert len(ds.query) == 20 and len(ds.train) == 30 and len(ds.database) == 6 * PER_FILE - 20
    assert not [p for p in root.iterdir() if p.name.startswith(".")]  # no temp files left
    # a second construction with download=True finds the data and fetches nothing
    (served / "cifar-10-binary.tar.gz").unlink()
    again = fetch()
    np.testing.assert_array_equal(again.query, ds.query)


def test_download_repairs_a_broken_folder(server, tmp_path):
    served, base = server
    batches = make_batches()
    archive = binary_archive(batches)
    (served / "cifar-10-binary.tar.gz").write_bytes(archive)
    root = tmp_path / "root"
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(root, filter="data")
    broken = root / "cifar-10-batches-bin" / "data_batch_4.bin"
    broken.write_bytes(broken.read_bytes()[:-3073])
    with pytest.raises(HashCondenseError, match="data_batch_4.bin is truncated .*pass --download"):
        TinyCIFAR10(root)
    url = f"{base}/cifar-10-binary.tar.gz"
    ds = TinyCIFAR10(root, download=True, url=url, md5=hashlib.md5(archive).hexdigest())
    np.testing.assert_array_equal(ds.data, expected_pool(batches)[0])


def test_download_wrong_checksum_leaves_nothing(server, tmp_path):
    served, base = server
    archive = binary_archive(make_batches())
    (served / "cifar-10-binary.tar.gz").write_bytes(archive)
    root = tmp_path / "root"
    wrong = "0" * 32
    with pytest.raises(HashCondenseError) as err:
        TinyCIFAR10(root, download=True, url=f"{base}/cifar-10-binary.tar.gz", md5=wrong)
    msg = str(err.value)
    assert "cifar-10-binary.tar.gz" in msg and wrong in msg and hashlib.md5(archive).hexdigest() in msg
    assert "\n" not in msg
    assert list(root.iterdir()) == []


def test_download_http_error(server, tmp_path):
    _, base = server
    with pytest.raises(HashCondenseError, match="cannot download cifar-10-binary.tar.gz"):
        TinyCIFAR10(tmp_path / "root", download=True, url=f"{base}/missing.tar.gz")


def test_python_release_via_download_helper(server, tmp_path):
    from hashcondense.data.download import download_and_extract_archive

    served, base = server
    batches = make_batches(seed=1)
    files = python_files(batches)
    archive = python_archive(files)
    (served / "cifar-10-python.tar.gz").write_bytes(archive)
    root = tmp_path / "root"
    download_and_extract_archive(f"{base}/cifar-10-python.tar.gz", root, md5=hashlib.md5(archive).hexdigest())
    ds = tiny_python_class(files)(root, query_per_class=2, train_per_class=3).retrieval()
    images, labels = expected_pool(batches)
    np.testing.assert_array_equal(ds.images, images)
    np.testing.assert_array_equal(ds.labels, labels)
    assert ds.class_names == CLASSES


def test_python_batch_md5_checked(tmp_path):
    files = python_files(make_batches())
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name, data in files.items():
        (folder / name).write_bytes(data)
    cls = tiny_python_class(files)
    (folder / "data_batch_2").write_bytes(files["data_batch_2"][:-10] + b"0123456789")
    with pytest.raises(HashCondenseError, match="data_batch_2 fails its MD5 check"):
        cls(tmp_path)


def test_restricted_unpickler_refuses_code(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    payload = pickle.dumps({"data": Evil()}, protocol=2)
    with pytest.raises(pickle.UnpicklingError, match="refused global"):
        RestrictedUnpickler(io.BytesIO(payload)).load()
    # through the loader: the batch file is refused with a one-line user error, nothing runs
    files = python_files(make_batches())
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name, data in files.items():
        (folder / name).write_bytes(data)
    (folder / "data_batch_1").write_bytes(payload)

    class NoMd5(TinyCIFAR10):
        py_train_list = tuple((f"data_batch_{i}", None) for i in range(1, 6))

    with pytest.raises(HashCondenseError, match="refused global '(posix|os|nt).system'"):
        NoMd5(tmp_path)
    assert not marker.exists()
    # numpy-array globals in a modern pickle (protocol 5 uses numpy._core.numeric._frombuffer) are refused
    (folder / "data_batch_1").write_bytes(pickle.dumps({"data": np.zeros((2, 3), np.uint8)}, protocol=5))
    with pytest.raises(HashCondenseError, match="refused global"):
        NoMd5(tmp_path)


def test_restricted_load_reads_official_style_pickle(tmp_path):
    data = np.arange(3072 * 2, dtype=np.uint8).reshape(2, 3072) % 251
    path = tmp_path / "batch"
    path.write_bytes(py2_pickle({b"data": data, b"labels": [3, 4]}))
    batch = restricted_load(path)
    np.testing.assert_array_equal(batch["data"], data)
    assert batch["labels"] == [3, 4]


def write_npz(root, batches, names=True):
    images, labels = expected_pool(batches)
    n_train = 5 * PER_FILE
    arrays = dict(
        train_images=images[:n_train],
        train_labels=labels[:n_train],
        test_images=images[n_train:],
        test_labels=labels[n_train:],
    )
    if names:
        arrays["class_names"] = np.array(CLASSES)
    root.mkdir(parents=True, exist_ok=True)
    path = root / "cifar10.npz"
    np.savez_compressed(path, **arrays)
    return path, images, labels


def test_npz_round_trip_with_sha256sums(tmp_path):
    path, images, labels = write_npz(tmp_path, make_batches(seed=2))
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    (tmp_path / "SHA256SUMS").write_text(f"{digest}  cifar10.npz\n")
    ds = load_cifar10(tmp_path, query_per_class=2, train_per_class=3, split_seed=5)
    np.testing.assert_array_equal(ds.images, images)
    np.testing.assert_array_equal(ds.labels, labels)
    assert ds.labels.dtype == np.int64 and ds.images.dtype == np.uint8
    assert ds.info["sha256"] == digest and ds.split_seed == 5
    assert ds.mean == (0.4914, 0.4822, 0.4465) and ds.std == (0.2470, 0.2435, 0.2616)
    # the same seed gives the same split, another seed another one
    again = load_cifar10(tmp_path, query_per_class=2, train_per_class=3, split_seed=5)
    other = load_cifar10(tmp_path, query_per_class=2, train_per_class=3, split_seed=6)
    np.testing.assert_array_equal(again.query, ds.query)
    assert not np.array_equal(other.query, ds.query)
    # a wrong checksum in SHA256SUMS is a one-line error naming both digests
    (tmp_path / "SHA256SUMS").write_text(f"{'f' * 64}  cifar10.npz\n")
    with pytest.raises(HashCondenseError, match=f"fails its SHA256SUMS check: SHA256 {digest}, expected f+"):
        load_cifar10(tmp_path, query_per_class=2, train_per_class=3)


def test_npz_corrupt(tmp_path):
    path, _, _ = write_npz(tmp_path, make_batches())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(HashCondenseError, match="cifar10.npz is unreadable or corrupt"):
        load_cifar10(tmp_path)
    path.write_bytes(b"not a zip file at all")
    with pytest.raises(HashCondenseError, match="unreadable or corrupt"):
        load_cifar10(tmp_path)
    np.savez(path, train_images=np.zeros((2, 32, 32), np.uint8))
    with pytest.raises(HashCondenseError, match="has no 'train_labels' array"):
        load_cifar10(tmp_path)


def test_npz_flipped_byte_fails_crc(tmp_path):
    batches = make_batches()
    images, labels = expected_pool(batches)
    path = tmp_path / "cifar10.npz"
    np.savez(
        path,
        train_images=images[:100],
        train_labels=labels[:100],
        test_images=images[100:],
        test_labels=labels[100:],
    )  # stored, not deflated: a flipped byte is only caught by the CRC
    data = bytearray(path.read_bytes())
    data[5000] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(HashCondenseError, match="unreadable or corrupt"):
        load_cifar10(tmp_path, query_per_class=2, train_per_class=3)


def test_missing_root(tmp_path):
    with pytest.raises(HashCondenseError) as err:
        load_dataset("cifar10", root=tmp_path / "nowhere")
    msg = str(err.value)
    assert msg.startswith("CIFAR-10 not found in") and "--download" in msg and "cifar10.npz" in msg


def test_truncated_binary_batch(tmp_path):
    with tarfile.open(fileobj=io.BytesIO(binary_archive(make_batches()))) as tar:
        tar.extractall(tmp_path, filter="data")
    batch = tmp_path / "cifar-10-batches-bin" / "data_batch_3.bin"
    good = batch.read_bytes()
    batch.write_bytes(good[:-100])
    with pytest.raises(HashCondenseError, match="data_batch_3.bin is truncated or corrupt"):
        TinyCIFAR10(tmp_path)
    # the record count per file is enforced (a cut at a record boundary is caught too)
    batch.write_bytes(good[: 3073 * 5])
    with pytest.raises(HashCondenseError, match="expected 61460"):
        TinyCIFAR10(tmp_path)
    batch.write_bytes(good)
    (tmp_path / "cifar-10-batches-bin" / "test_batch.bin").unlink()
    with pytest.raises(HashCondenseError, match="test_batch.bin is missing"):
        TinyCIFAR10(tmp_path)


def test_binary_bad_label(tmp_path):
    batches = make_batches()
    batches[0][1][0] = 42
    with tarfile.open(fileobj=io.BytesIO(binary_archive(batches))) as tar:
        tar.extractall(tmp_path, filter="data")
    with pytest.raises(HashCondenseError, match="labels outside 0..9"):
        TinyCIFAR10(tmp_path)
