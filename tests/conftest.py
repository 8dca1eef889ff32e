"""Shared test settings (two threads: the CI machine has two cores; no progress bars) and fixtures."""

import functools
import http.server
import os
import threading

# Idle OpenMP threads sleep instead of spinning: on a shared 2-core machine spinning threads slow
# small test workloads many times over.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HASHCONDENSE_PROGRESS", "0")

import pytest  # noqa: E402
import torch  # noqa: E402

from hashcondense.runtime import tune_allocator  # noqa: E402

torch.set_num_threads(2)
tune_allocator()  # what the CLI does: reuse freed memory instead of page-faulting it in again


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors: one thread is as fast, and far faster when other jobs share the cores.

    Opt in per module with `pytestmark = pytest.mark.usefixtures("one_thread")`.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def digits():
    from hashcondense.data import load_dataset

    return load_dataset("digits")


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path, monkeypatch):
    """(folder, base URL) of a static HTTP server on a free 127.0.0.1 port."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    served = tmp_path / "served"
    served.mkdir()
    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(served))
    )
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join()
