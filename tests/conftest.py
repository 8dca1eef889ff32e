"""Shared test settings: two threads (the CI machine has two cores), no progress bars."""

import os

# Idle OpenMP threads sleep instead of spinning: on a shared 2-core machine spinning threads slow
# small test workloads many times over.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HASHCONDENSE_PROGRESS", "0")

import pytest  # noqa: E402
import torch  # noqa: E402

from hashcondense.runtime import tune_allocator  # noqa: E402

torch.set_num_threads(2)
tune_allocator()  # what the CLI does: reuse freed memory instead of page-faulting it in again


@pytest.fixture(scope="session")
def digits():
    from hashcondense.data import load_dataset

    return load_dataset("digits")
