"""The idle keep-alive race of issue #10 (point 2), as its test and `bench/idle_race.py` run it:
a real gateway in front of one real uvicorn (`support.upstream_app`), and `lanes` clients each
sending POSTs without an `Idempotency-Key` to `POST /record`, each after an idle gap of its own.

Every lane has its own route and service, so its own pool to the same uvicorn: the gap between
a lane's POSTs is the idle time of that pool's connection, which is what the race is about (one
shared pool would hand every POST the warmest connection and hide it). The upstream records
each delivery with the connection it came on, so duplicates and reuse are counted where they
happen, not inferred from answers."""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import yaml

from surge.ports import free_ports


def race_config(upstream: str, lanes: int) -> str:
    """A surge.yaml on free ports: route `/l{i}/` -> service `l{i}` -> `upstream`."""
    listen, admin = free_ports(2)
    # Checks far apart: fifty services probe the same replica, and none of them uses the pool.
    health = {"path": "/healthz", "interval": "5s", "timeout": "1s", "rise": 1, "fall": 3}
    config = {
        "gateway": {"listen": f"127.0.0.1:{listen}", "admin": f"127.0.0.1:{admin}",
                    "access_log": "off"},
        "services": {f"l{i}": {"upstreams": [upstream], "health": health}
                     for i in range(lanes)},
        "routes": [{"prefix": f"/l{i}/", "service": f"l{i}", "strip_prefix": True}
                   for i in range(lanes)],
    }
    return yaml.safe_dump(config, sort_keys=False)


@dataclass
class RaceReport:
    """What the lanes saw and what the upstream received."""

    sent: int = 0
    failed: Counter[str] = field(default_factory=Counter)  # status (or error) -> count
    deliveries: Counter[str] = field(default_factory=Counter)  # POST id -> times delivered
    reused: int = 0  # deliveries on a connection an earlier POST of the same lane came on

    @property
    def duplicated(self) -> int:
        return sum(n - 1 for n in self.deliveries.values() if n > 1)

    @property
    def reuse_share(self) -> float:
        delivered = sum(self.deliveries.values())
        return self.reused / delivered if delivered else 0.0

    def describe(self) -> str:
        failed = ", ".join(f"{k}: {n}" for k, n in sorted(self.failed.items())) or "none"
        return (f"{self.sent} POSTs sent, failed {sum(self.failed.values())} ({failed}), "
                f"delivered {sum(self.deliveries.values())}, delivered twice "
                f"{self.duplicated}, pooled reuse {self.reuse_share:.1%}")


class Gaps:
    """The idle gaps of one lane: uniform within (low, high), or, with `seek_edge`, a staircase
    that homes in on the gap at which the upstream's idle close meets the next POST (longer
    after a POST that reused its connection, shorter after one that did not), so that most
    POSTs arrive within a millisecond or two of the close, where the race is lost."""

    def __init__(self, low: float, high: float, rng: random.Random, seek_edge: bool) -> None:
        self.low, self.high, self.rng, self.seek_edge = low, high, rng, seek_edge
        self.edge = (low + high) / 2
        self.step = (high - low) / 4
        self.last_reused: bool | None = None

    def next(self) -> float:
        if not self.seek_edge:
            return self.rng.uniform(self.low, self.high)
        return min(self.high, max(self.low, self.edge + self.rng.uniform(-0.001, 0.001)))

    def answered(self, reused: bool) -> None:
        if self.last_reused is not None and reused != self.last_reused:
            self.step = max(self.step / 2, 0.0005)  # a reversal: closer to the edge
        self.last_reused = reused
        self.edge += self.step if reused else -self.step


async def _lane(client: httpx.AsyncClient, lane: int, posts: int, gaps: Gaps,
                answers: list[tuple[str, str]]) -> None:
    await asyncio.sleep(gaps.rng.uniform(0, gaps.high))  # lanes out of step with each other
    peer = None
    for seq in range(posts):
        post_id = f"{lane}-{seq}"
        try:
            response = await client.post(f"/l{lane}/record", content=post_id)
            answers.append((post_id, str(response.status_code)))
            if response.status_code == 200:
                now = response.headers.get("x-upstream-peer")
                gaps.answered(now == peer)
                peer = now
        except httpx.HTTPError as exc:
            answers.append((post_id, type(exc).__name__))
        if seq + 1 < posts:
            await asyncio.sleep(gaps.next())


async def run_lanes(url: str, lanes: int, posts: int, gaps: tuple[float, float],
                    seed: int = 0, seek_edge: bool = False) -> list[tuple[str, str]]:
    """Run `lanes` lanes of `posts` POSTs each, `gaps` (low, high) seconds apart (see `Gaps`);
    returns (POST id, status or error name) per POST."""
    answers: list[tuple[str, str]] = []
    clients = [httpx.AsyncClient(base_url=url, timeout=30.0) for _ in range(lanes)]
    try:
        await asyncio.gather(*(
            _lane(client, lane, posts,
                  Gaps(*gaps, random.Random(seed * 1000 + lane), seek_edge), answers)
            for lane, client in enumerate(clients)))
    finally:
        for client in clients:
            await client.aclose()
    return answers


def read_report(answers: list[tuple[str, str]], record_file: Path) -> RaceReport:
    report = RaceReport(sent=len(answers))
    report.failed.update(status for _, status in answers if status != "200")
    seen: set[tuple[str, str]] = set()  # (lane, peer)
    lines = record_file.read_text().splitlines() if record_file.exists() else []
    for line in lines:
        record = json.loads(line)
        post_id, peer = record["body"], record["peer"]
        report.deliveries[post_id] += 1
        lane = post_id.partition("-")[0]
        if (lane, peer) in seen:
            report.reused += 1
        seen.add((lane, peer))
    return report
