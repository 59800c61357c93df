"""The garbage collector's thresholds of a serving process (``wawindow run``, ``dev``)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from wawindow.roles import COLLECTOR_THRESHOLDS, tune_collector


@pytest.fixture
def default_thresholds() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.set_threshold(*before)


@pytest.mark.usefixtures("default_thresholds")
def test_a_serving_process_collects_its_young_objects_rarely() -> None:
    """Python's default runs a young-generation collection every 700 allocations: several
    per webhook. A serving process waits for tens of thousands, and still collects."""
    assert gc.get_threshold()[0] < 1_000  # the test process keeps Python's default

    tune_collector()

    assert gc.get_threshold() == COLLECTOR_THRESHOLDS
    assert COLLECTOR_THRESHOLDS[0] >= 10_000
    assert gc.isenabled()
