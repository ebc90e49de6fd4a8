"""Specification: no size limit drops a message; arrays travel as out-of-band buffers."""

from __future__ import annotations

import numpy as np
import pytest

from fiber_jupyter import serialization

from . import tasks

MB = 1024 * 1024


@pytest.mark.timeout(120)
def test_a_300_mb_argument_and_a_300_mb_result_make_the_round_trip(pool):
    payload = bytes(300 * MB)
    assert pool.apply(tasks.nbytes, (payload,)) == 300 * MB
    result = pool.apply(tasks.make_bytes, (300 * MB,))
    assert len(result) == 300 * MB and result[:1] == b"\x01" and result[-1:] == b"\x01"


def test_numpy_arrays_are_mapped_exactly(pool):
    arrays = [np.full(MB, i, dtype=np.float64) for i in range(16)]  # 8 MB each
    assert pool.map(tasks.array_sum, arrays) == [float(i * MB) for i in range(16)]


def test_returned_arrays_arrive_intact_and_writable(pool):
    arrays = [np.arange(100_000, dtype=np.int64) * i for i in range(4)]
    results = pool.map(tasks.echo, arrays)
    for original, returned in zip(arrays, results):
        np.testing.assert_array_equal(original, returned)
    results[0][0] = 42
    assert results[0][0] == 42


def test_large_arrays_are_pickled_out_of_band_without_a_copy_in_the_stream():
    array = np.zeros(4 * MB, dtype=np.uint8)
    pickled = serialization.dumps([array])
    assert len(pickled.data) < 1024
    assert [len(memoryview(b).cast("B")) for b in pickled.buffers] == [4 * MB]
    (restored,) = serialization.loads(pickled.data, pickled.buffers)
    assert np.shares_memory(restored, np.frombuffer(pickled.buffers[0], dtype=np.uint8))
