import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"

torch.set_num_threads(int(os.environ.get("NAMMX_TEST_THREADS", "2")))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.fail(f"the shared folder is expected beside the checkout at {SHARED}")
    return SHARED


@pytest.fixture(scope="session")
def smollm2():
    from adapters.loading import load_model

    return load_model("smollm2")


@pytest.fixture
def one_thread():
    """Per-step calls of a tiny model: extra threads only add sync cost (x30 on a busy CPU)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
