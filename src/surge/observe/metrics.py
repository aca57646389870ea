"""Gateway metrics. The data path only bumps plain integers (`RouteStats.observe`, the
`failed` counter); Prometheus families are built from them at scrape time by
`GatewayCollector`, so counting costs a few attribute increments per request."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Final

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

# Typed as a variable-length tuple: compiled, a fixed-length one is a C struct that every
# use as an object (a loop, a call) boxes anew, 13 floats each time.
BUCKETS: Final[tuple[float, ...]] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_CLASSES: Final = ("1xx", "2xx", "3xx", "4xx", "5xx")


class RouteStats:
    __slots__ = ("classes", "buckets", "sum")

    def __init__(self) -> None:
        self.classes = [0] * 6
        self.buckets = [0] * (len(BUCKETS) + 1)
        self.sum = 0.0

    def observe(self, status: int, duration: float) -> None:
        self.classes[status // 100] += 1
        # The first bucket at or above `duration` (bisect_left), counted up from the fast end:
        # most requests end in the first few, and compiled this is a few float compares.
        i = 0
        for bound in BUCKETS:
            if duration <= bound:
                break
            i += 1
        self.buckets[i] += 1
        self.sum += duration


class GatewayStats:
    """Counters that outlive config reloads (Prometheus counters must never go back)."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], RouteStats] = {}
        self.failed: Counter[str] = Counter()  # failed or rejected requests by reason
        self.unrouted = [0] * 6                  # answers given before a route matched

    def route(self, label: str, service: str) -> RouteStats:
        return self.routes.setdefault((label, service), RouteStats())


class GatewayCollector:
    """A prometheus_client collector reading the live stats and services at scrape time."""

    def __init__(self, stats: GatewayStats, services: Callable[[], Iterable[Any]],
                 connections: Callable[[], int], inflight: Callable[[], int]) -> None:
        self.stats = stats
        self.services = services
        self.connections = connections
        self.inflight = inflight

    def collect(self) -> Iterator[Metric]:
        yield from self._requests()
        failed = CounterMetricFamily("surge_requests_failed", "Requests the gateway failed "
                                     "or rejected itself, by reason", labels=["reason"])
        for reason, count in sorted(self.stats.failed.items()):
            failed.add_metric([reason], count)
        yield failed
        yield GaugeMetricFamily("surge_client_connections", "Open client connections",
                                value=self.connections())
        yield GaugeMetricFamily("surge_gateway_inflight", "Requests in flight in this gateway "
                                "process (capped by gateway.max_inflight)", value=self.inflight())
        yield from self._upstreams()

    def _requests(self) -> Iterator[Metric]:
        requests = CounterMetricFamily("surge_requests", "Requests answered, by route, service "
                                       "and status class", labels=["route", "service", "code"])
        duration = HistogramMetricFamily("surge_request_duration_seconds", "Time from request "
                                         "head to response end", labels=["route", "service"])
        for (label, service), stats in sorted(self.stats.routes.items()):
            for index, name in enumerate(_CLASSES, start=1):
                if stats.classes[index]:
                    requests.add_metric([label, service, name], stats.classes[index])
            cumulative, buckets = 0, []
            for bound, count in zip((*BUCKETS, float("inf")), stats.buckets, strict=True):
                cumulative += count
                buckets.append((_bound(bound), cumulative))
            duration.add_metric([label, service], buckets, stats.sum)
        for index, name in enumerate(_CLASSES, start=1):
            if self.stats.unrouted[index]:
                requests.add_metric(["", "", name], self.stats.unrouted[index])
        yield requests
        yield duration

    def _upstreams(self) -> Iterator[Metric]:
        labels = ["service", "upstream"]
        healthy = GaugeMetricFamily("surge_upstream_healthy", "1 when the upstream passes "
                                    "its health checks", labels=labels)
        ejected = GaugeMetricFamily("surge_upstream_ejected", "1 while passive outlier "
                                    "detection keeps the upstream out", labels=labels)
        inflight = GaugeMetricFamily("surge_upstream_inflight", "Requests in flight",
                                     labels=labels)
        pool = GaugeMetricFamily("surge_upstream_pool_connections", "Pooled connections",
                                 labels=[*labels, "state"])
        per_service = [(family(name, text, labels=["service"]), read)
                       for family, name, text, read in _SERVICE_FAMILIES]
        for service in self.services():
            name = service.name
            for up in service.upstreams.values():
                key = [name, up.address]
                healthy.add_metric(key, int(up.healthy))
                ejected.add_metric(key, int(up.ejected))
                inflight.add_metric(key, up.inflight)
                pool.add_metric([*key, "open"], len(up.pool.conns))
                pool.add_metric([*key, "idle"], len(up.pool.idle))
            for metric, read in per_service:
                metric.add_metric([name], read(service))
        yield from (healthy, ejected, inflight, pool)
        yield from (metric for metric, _ in per_service)


# One family per service figure: (kind, name, help, how to read it from a ServiceRuntime).
_SERVICE_FAMILIES: Final[tuple[tuple[Any, str, str, Callable[[Any], float]], ...]] = (
    (CounterMetricFamily, "surge_upstream_ejections", "Upstreams ejected by outlier detection",
     lambda s: s.ejections),
    (CounterMetricFamily, "surge_upstream_ejections_refused",
     "Ejections refused by max_ejected_percent", lambda s: s.outlier.refused),
    (CounterMetricFamily, "surge_retries", "Requests retried on another upstream",
     lambda s: s.retries),
    (GaugeMetricFamily, "surge_pending_requests", "Requests waiting for an upstream connection",
     lambda s: s.pending),
    (CounterMetricFamily, "surge_retry_budget_exhausted",
     "Retries refused by the service's retry budget", lambda s: s.budget.exhausted),
    (GaugeMetricFamily, "surge_service_panic",
     "1 while too few upstreams are healthy and traffic spreads over all of them",
     lambda s: int(s.panic)),
    (CounterMetricFamily, "surge_health_checks_excused",
     "Timed-out health checks not counted: the upstream was answering live requests",
     lambda s: s.checks_excused),
    (CounterMetricFamily, "surge_hedges", "Second copies sent by hedged routes",
     lambda s: s.hedges),
    (CounterMetricFamily, "surge_hedge_wins", "Hedged copies that answered first",
     lambda s: s.hedge_wins),
)


def _bound(value: float) -> str:
    return "+Inf" if value == float("inf") else repr(value)
