"""Load profiles for `surge load`: the target request rate over time, parsed from text like
`0->500rps over 30s, hold 60s, ->50rps`. Pure; the generator that follows it is in `load.py`.

Segments, separated by commas, run one after another:
- `A->B rps over D`: ramp linearly from A to B over D (without A, from the rate so far);
- `->B rps` or `B rps`: jump to B; with `for D`, hold it that long;
- `hold D`: keep the rate so far for D.
A last segment without a duration lasts until the run is stopped (`--duration` or Ctrl-C)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from surge.config.units import parse_duration
from surge.errors import ConfigError, UnitError

_NUMBER = r"(\d+(?:\.\d+)?)"
_RATE = _NUMBER + r"\s*(?:rps|/s)?"
_DURATION = r"(\d+(?:\.\d+)?\s*(?:ms|s|m|h)?)"
_RAMP = re.compile(rf"^(?:{_RATE})?\s*->\s*{_RATE}(?:\s+(over|for)\s+{_DURATION})?$")
_STEADY = re.compile(rf"^{_RATE}(?:\s+for\s+{_DURATION})?$")
_HOLD = re.compile(rf"^hold\s+{_DURATION}$")


@dataclass(frozen=True, slots=True)
class Segment:
    """From `start` seconds into the run, for `length` seconds (None: open-ended), the rate
    goes linearly from `begin` to `end` requests per second."""

    start: float
    length: float | None
    begin: float
    end: float

    def rate_at(self, t: float) -> float:
        if not self.length:
            return self.end
        share = min(1.0, max(0.0, (t - self.start) / self.length))
        return self.begin + (self.end - self.begin) * share

    def sent_by(self, t: float) -> float:
        """Requests due from this segment's start until `t` (the area under the rate)."""
        elapsed = max(0.0, t - self.start)
        if not self.length:
            return self.end * elapsed
        within = min(elapsed, self.length)
        ramp = self.begin * within + (self.end - self.begin) * within * within / (2 * self.length)
        return ramp + self.end * (elapsed - within)


@dataclass(frozen=True, slots=True)
class Profile:
    segments: tuple[Segment, ...]

    @property
    def duration(self) -> float | None:
        """Seconds until the last segment ends; None when the last one is open-ended."""
        last = self.segments[-1]
        return None if last.length is None else last.start + last.length

    def rate_at(self, t: float) -> float:
        return self._segment(t).rate_at(t)

    def sent_by(self, t: float) -> float:
        """Requests due in the first `t` seconds of the run; past the profile's end, its
        last rate goes on (so `--duration` may outlast the profile)."""
        total = 0.0
        for segment in self.segments:
            if segment.length is None or t < segment.start + segment.length:
                return total + segment.sent_by(t)
            total += segment.sent_by(segment.start + segment.length)
        last = self.segments[-1]
        return total + last.end * (t - last.start - (last.length or 0.0))

    def _segment(self, t: float) -> Segment:
        for segment in self.segments:
            if segment.length is None or t < segment.start + segment.length:
                return segment
        return self.segments[-1]


def parse_profile(text: str) -> Profile:
    """`0->500rps over 30s, hold 60s, ->50rps` -> a Profile. Raises ConfigError."""
    segments: list[Segment] = []
    rate, start = 0.0, 0.0
    parts = [p.strip().lower() for p in text.split(",")]
    for i, part in enumerate(parts):
        segment = _parse_segment(part, rate, start)
        if segment is None:
            raise ConfigError([f"profile segment {part!r}: expected 'A->Brps over 30s', "
                               "'->Brps', 'Brps for 30s' or 'hold 30s'"])
        if segment.length is None and i != len(parts) - 1:
            raise ConfigError([f"profile segment {part!r}: only the last segment may be "
                               "open-ended; give it a duration"])
        segments.append(segment)
        rate, start = segment.end, start + (segment.length or 0.0)
    return Profile(tuple(segments))


def _parse_segment(part: str, rate: float, start: float) -> Segment | None:
    try:
        if m := _HOLD.match(part):
            return Segment(start, parse_duration(m.group(1)), rate, rate)
        if m := _RAMP.match(part):
            begin = float(m.group(1)) if m.group(1) is not None else rate
            end = float(m.group(2))
            length = parse_duration(m.group(4)) if m.group(4) else None
            if m.group(3) != "over" or not length:  # a jump: begin does not matter
                return Segment(start, length, end, end)
            return Segment(start, length, begin, end)
        if m := _STEADY.match(part):
            value = float(m.group(1))
            return Segment(start, parse_duration(m.group(2)) if m.group(2) else None, value, value)
    except UnitError:
        return None
    return None

