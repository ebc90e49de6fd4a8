"""Specification of the words for workers' CPU and memory (usage_text.py)."""

from __future__ import annotations

import pytest

from fiber_jupyter import WorkerInfo
from fiber_jupyter.jupyter.usage_text import (UsageSummary, format_bytes, heaviest_text,
                                              range_text, summarize,
                                              usage_text)


def worker(number, cpu=None, memory=None):
    return WorkerInfo(f"w{number}", "ready", 0, 100 + number, "host", cpu, memory)


@pytest.mark.parametrize("count, text", [
    (0, "0 B"), (1023, "1023 B"), (1536, "1.5 KiB"), (412 * 2**20, "412 MiB"),
    (int(3.24 * 2**30), "3.2 GiB"), (5 * 2**40, "5.0 TiB"), (2**52, "4096 TiB")])
def test_bytes_are_shown_in_binary_units_with_a_decimal_below_ten(count, text):
    assert format_bytes(count) == text


def test_the_totals_count_only_workers_that_reported():
    summary = summarize([worker(0, 90.0, 100), worker(1, None, 300), worker(2)])
    assert summary == UsageSummary(90.0, 400, 2, worker(1, None, 300))
    assert usage_text(summary) == "cpu 90 % \u00b7 memory 400 B (2 workers)"


def test_before_any_worker_reported_there_is_nothing_to_add_up():
    assert summarize([worker(0), worker(1)]) == UsageSummary(None, None, 0, None)
    assert usage_text(summarize([])) == "no usage reported yet"


def test_a_run_without_reports_has_no_usage_words():
    assert range_text([worker(0), worker(1)]) == ""
    assert range_text([worker(0, 12.0, 2048)]) == "cpu 12 % \u00b7 memory 2.0 KiB"


def test_until_the_cpu_share_is_known_only_memory_is_named():
    summary = summarize([worker(0, None, 2048), worker(1, None, 1024)])
    assert usage_text(summary) == "memory 3.0 KiB (2 workers)"
    assert heaviest_text(summary.heaviest) == "most memory: w0, 2.0 KiB"
