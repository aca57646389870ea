import random

from surge.upstreams.retry import RetryBudget, backoff


def test_a_quiet_service_may_still_retry_up_to_the_floor():
    budget = RetryBudget(percent=20, min_per_second=3)
    budget.tick(0.0, 0)
    assert [budget.try_retry(1) for _ in range(4)] == [True, True, True, False]
    assert budget.exhausted == 1


def test_the_floor_is_a_rate_refilled_with_the_time_between_ticks():
    budget = RetryBudget(percent=0, min_per_second=10)
    budget.tick(0.0, 0)
    assert sum(budget.try_retry(0) for _ in range(30)) == 10
    budget.tick(0.5, 0)  # half a second: five more
    assert sum(budget.try_retry(0) for _ in range(30)) == 5
    budget.tick(1.0, 0)
    budget.tick(2.0, 0)  # refilled, but never past one second's worth: no burst after a lull
    budget.tick(60.0, 0)
    assert sum(budget.try_retry(0) for _ in range(30)) == 10


def test_a_trickle_of_connect_failures_is_retried_every_time():
    # Issue 10's scenario: one request in two meets a dead upstream, a few a second, until
    # outlier detection ejects it; half the requests alone would not pay for those retries.
    budget = RetryBudget(percent=50, min_per_second=10)
    budget.tick(0.0, 0)
    granted = []
    for n in range(1, 61):
        now = n * 0.02
        if n % 10 == 0:
            budget.tick(now, n)  # the gateway's housekeeping, about once a second
        if n % 2:
            granted.append(budget.try_retry(n))
    assert all(granted)


def test_the_floor_adds_to_the_share_rather_than_replacing_it():
    budget = RetryBudget(percent=20, min_per_second=5)
    budget.tick(0.0, 0)
    assert sum(budget.try_retry(100) for _ in range(50)) == 20 + 5


def test_the_share_caps_retries_under_overload():
    budget = RetryBudget(percent=20, min_per_second=0)
    budget.tick(0.0, 0)
    assert sum(budget.try_retry(100) for _ in range(50)) == 20


def test_under_sustained_overload_retries_stay_near_the_share_plus_the_floor():
    budget = RetryBudget(percent=10, min_per_second=10)
    requests = granted = 0
    for second in range(30):
        budget.tick(float(second), requests)
        requests += 1000
        granted += sum(budget.try_retry(requests) for _ in range(1000))  # every request fails
    assert granted <= 30 * (100 + 10)
    assert budget.exhausted >= 30 * 1000 - 30 * (100 + 10)


def test_the_budget_refills_as_old_requests_leave_the_window():
    budget = RetryBudget(percent=10, min_per_second=0, window=10.0)
    budget.tick(0.0, 0)
    assert sum(budget.try_retry(100) for _ in range(20)) == 10
    budget.tick(5.0, 100)
    budget.tick(16.0, 200)  # the window starts at 6 s: 100 requests since 5 s, none retried
    assert sum(budget.try_retry(200) for _ in range(20)) == 10


def test_backoff_is_full_jitter_within_a_doubling_ceiling():
    rng = random.Random(7)
    for attempt in (1, 2, 3):
        waits = [backoff(0.025, attempt, rng) for _ in range(500)]
        assert 0.0 <= min(waits) and max(waits) <= 0.025 * 2 ** (attempt - 1)
        assert max(waits) > 0.8 * 0.025 * 2 ** (attempt - 1)
