import random

from surge.upstreams.retry import RetryBudget, backoff


def test_a_quiet_service_may_still_retry_up_to_the_floor():
    budget = RetryBudget(percent=20, min_retries=3)
    budget.tick(0.0, 0)
    assert [budget.try_retry(1) for _ in range(4)] == [True, True, True, False]
    assert budget.exhausted == 1


def test_retries_stay_within_their_share_of_recent_requests():
    budget = RetryBudget(percent=20, min_retries=0)
    budget.tick(0.0, 0)
    assert sum(budget.try_retry(100) for _ in range(50)) == 20


def test_the_budget_refills_as_old_requests_leave_the_window():
    budget = RetryBudget(percent=10, window=10.0, min_retries=0)
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
