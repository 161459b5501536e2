"""The corpus benchmark's split of a micro-batch's time into a fixed and a per-record part."""

from __future__ import annotations

import pytest

from bench.real_corpus import batch_cost


def test_a_micro_batch_s_time_splits_into_fixed_and_per_record_parts() -> None:
    # 250 ms per micro-batch plus 12 µs per record, at the drains' two batch sizes
    batches = [(rows, round(250 + 0.012 * rows)) for rows in (49_998, 49_998, 13_917)]
    cost = batch_cost(batches)
    assert cost["fixed_ms"] == 250
    assert cost["us_per_record"] == pytest.approx(12.0, abs=0.01)


def test_micro_batches_of_one_size_give_no_split() -> None:
    assert batch_cost([(113_913, 3100), (113_913, 2900)]) is None
