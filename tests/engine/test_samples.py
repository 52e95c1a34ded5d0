"""The project's samples/ are the shared sample flows, unchanged."""

from pathlib import Path

import pytest

from .flowfactory import SAMPLES

SHARED = Path(__file__).resolve().parents[3] / "shared" / "flows"


@pytest.mark.skipif(not SHARED.is_dir(), reason="shared/flows is not beside this checkout")
def test_samples_are_identical_to_shared_flows():
    shared = {p.name: p.read_bytes() for p in SHARED.iterdir() if p.is_file()}
    copied = {p.name: p.read_bytes() for p in SAMPLES.iterdir() if p.name in shared}
    assert copied == shared
