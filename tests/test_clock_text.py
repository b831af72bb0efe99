"""clock.rfc3339 formats without importing datetime: the same text as datetime's, second for second,
including the rounding to microseconds that can carry into the next second."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentctl.clock import _MAX_TIME, rfc3339


def _datetime_text(ts: float, micro: bool) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ" if micro else "%Y-%m-%dT%H:%M:%SZ")


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.floats(0, _MAX_TIME, exclude_max=True), st.integers(0, _MAX_TIME - 1)), st.booleans())
def test_the_same_text_as_datetime(ts, micro):
    assert rfc3339(ts, micro=micro) == _datetime_text(ts, micro)


@pytest.mark.parametrize("ts", [0, 0.0, 1.9999996, 1.9999995, 59.9999999, 1_800_000_000.5, 1_796_237_810.798523, _MAX_TIME - 1,
                                _MAX_TIME - 0.0000001])
@pytest.mark.parametrize("micro", [False, True])
def test_edges(ts, micro):
    assert rfc3339(ts, micro=micro) == _datetime_text(ts, micro)
