"""Passive outlier detection: ejection after consecutive failures, growing with repeats, capped,
limited by max_ejected_percent, decayed by forgive()."""

from __future__ import annotations

import pytest

from surge.errors import IllegalTransition
from surge.upstreams.outlier import OutlierDetector
from surge.upstreams.upstream import Upstream


def service(n: int, percent: float = 50.0, **kwargs: float) -> tuple[OutlierDetector, list]:
    detector = OutlierDetector(
        consecutive_failures=3, ejection=30.0, max_ejected_percent=percent, **kwargs
    )
    ups = [Upstream(f"10.0.0.{i}:8000") for i in range(n)]
    detector.update(ups)
    return detector, ups


def fail(detector: OutlierDetector, upstream: Upstream, times: int, now: float = 0.0) -> list:
    return [detector.record(upstream, False, now) for _ in range(times)]


def test_consecutive_failures_eject_for_the_base_time() -> None:
    detector, ups = service(4)
    results = fail(detector, ups[0], 3, now=100.0)
    assert results[:2] == [None, None]
    ejection = results[2]
    assert ejection is not None
    assert (ejection.upstream, ejection.until, ejection.seconds, ejection.multiplier) == (
        ups[0], 130.0, 30.0, 1,
    )
    assert detector.is_ejected(ups[0]) and detector.ejections == 1


def test_a_success_resets_the_failure_streak() -> None:
    detector, ups = service(4)
    fail(detector, ups[0], 2)
    assert detector.record(ups[0], True, 0.0) is None
    assert fail(detector, ups[0], 2) == [None, None]
    assert not detector.is_ejected(ups[0])


@pytest.mark.parametrize(
    ("forgiven", "seconds"),
    [
        pytest.param([0, 0, 0, 0], [30.0, 60.0, 90.0, 120.0], id="grows with each ejection"),
        pytest.param([0, 1, 0, 2], [30.0, 30.0, 60.0, 30.0], id="forgive shortens the next"),
    ],
)
def test_ejection_time_grows_with_repeats_and_decays_with_forgiveness(
    forgiven: list[int], seconds: list[float]
) -> None:
    detector, ups = service(4)
    now = 0.0
    got = []
    for times in forgiven:
        for _ in range(times):
            detector.forgive(ups[0])
        ejection = fail(detector, ups[0], 3, now)[-1]
        assert ejection is not None
        got.append(ejection.seconds)
        now = ejection.until
        assert detector.due(now) == [ups[0]]
        detector.restore(ups[0])
    assert got == seconds


def test_ejection_time_is_capped_at_max_ejection() -> None:
    detector, ups = service(4, max_ejection=100.0)
    seconds = []
    for _ in range(5):
        ejection = fail(detector, ups[0], 3)[-1]
        assert ejection is not None
        seconds.append(ejection.seconds)
        detector.restore(ups[0])
    assert seconds == [30.0, 60.0, 90.0, 100.0, 100.0]
    assert detector.multiplier(ups[0]) == 5


def test_max_ejected_percent_refuses_and_counts_an_ejection_past_the_limit() -> None:
    detector, ups = service(4, percent=50.0)
    assert fail(detector, ups[0], 3)[-1] is not None
    assert fail(detector, ups[1], 3)[-1] is not None
    assert fail(detector, ups[2], 3)[-1] is None
    assert detector.refused == 1 and detector.ejected_count == 2
    # Still failing: each further failure is another refused attempt ...
    assert detector.record(ups[2], False, 0.0) is None and detector.refused == 2
    # ... until room frees up, when the next failure ejects it.
    detector.restore(ups[0])
    assert detector.record(ups[2], False, 0.0) is not None


def test_a_lone_upstream_is_never_ejected_below_100_percent() -> None:
    detector, ups = service(1, percent=99.0)
    assert fail(detector, ups[0], 10) == [None] * 10
    assert detector.refused == 8


def test_due_lists_only_upstreams_whose_time_is_up() -> None:
    detector, ups = service(4)
    fail(detector, ups[0], 3, now=0.0)
    fail(detector, ups[1], 3, now=10.0)
    assert detector.due(29.9) == []
    assert detector.due(30.0) == [ups[0]]
    assert detector.due(40.0) == [ups[0], ups[1]]
    # Listing does not restore: still ejected until the caller says so.
    assert detector.is_ejected(ups[0])


def test_results_for_an_ejected_upstream_are_ignored() -> None:
    detector, ups = service(4)
    fail(detector, ups[0], 3)
    assert fail(detector, ups[0], 5) == [None] * 5
    detector.restore(ups[0])
    assert fail(detector, ups[0], 2) == [None, None]


def test_update_forgets_removed_upstreams_and_keeps_the_rest() -> None:
    detector, ups = service(4)
    fail(detector, ups[0], 3)
    fail(detector, ups[1], 2)
    detector.update(ups[1:])
    assert detector.ejected_count == 0
    assert detector.record(ups[0], False, 0.0) is None
    assert detector.record(ups[1], False, 0.0) is not None


def test_restoring_an_upstream_that_is_not_ejected_is_illegal() -> None:
    detector, ups = service(4)
    with pytest.raises(IllegalTransition):
        detector.restore(ups[0])


def test_forgiving_an_ejected_upstream_is_illegal() -> None:
    detector, ups = service(4)
    fail(detector, ups[0], 3)
    with pytest.raises(IllegalTransition):
        detector.forgive(ups[0])
