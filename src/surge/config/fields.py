"""Building blocks of the surge.yaml models: their base class, and annotated field types for
durations, sizes, rates, host:port addresses, status ranges, names and `ip | header:NAME` keys.

Each type parses what a user writes (with `units.py` for the unit strings) and shows in the
JSON Schema as the string-or-number a user writes, never as the parsed Python value.
Only value-level checks live here; checks that span fields live on the models."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    ValidationError,
    WithJsonSchema,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from surge.config.checks import CLIENT_KEY_FORMS, TOKEN, check_request_key
from surge.config.units import parse_duration, parse_rate, parse_size


def _unit_schema(kind: str, examples: list[str], number: str) -> WithJsonSchema:
    return WithJsonSchema({
        "anyOf": [
            {"type": "string", "format": kind, "description": f"a {kind}, e.g. "
             + ", ".join(repr(e) for e in examples), "examples": examples},
            {"type": "number", "minimum": 0, "description": number},
        ]
    })


def problem_at(key: str | tuple[str | int, ...], value: Any,
               error: ValueError) -> ValidationError:
    """A model validator's problem reported at one of its keys (or a path below it, such as
    `("routes", 2, "version")`) rather than at the model, for a rule that must see several
    keys but is about one of them."""
    return ValidationError.from_exception_data("problem", [InitErrorDetails(
        type=PydanticCustomError("check", str(error)),
        loc=key if isinstance(key, tuple) else (key,), input=value)])


class SurgeModel(BaseModel):
    """Base of every surge.yaml model: unknown keys are errors, values are immutable, and the
    attribute docstrings below each field become its description in the JSON Schema. Numbers
    are accepted where strings are expected (`X-Canary: 1`)."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, use_attribute_docstrings=True, coerce_numbers_to_str=True,
    )


Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    _unit_schema("duration", ["250ms", "2s", "5m", "1h"], "seconds"),
]
"""Seconds, written `250ms`, `2s`, `5m`, `1h` or a bare number of seconds."""

Size = Annotated[
    int,
    BeforeValidator(parse_size),
    _unit_schema("size", ["512B", "16KiB", "10MiB"], "bytes"),
]
"""Bytes, written `16KiB`, `10MiB` or a bare number of bytes."""

RateValue = Annotated[
    Any,  # a units.Rate; Any keeps pydantic from re-validating the dataclass
    PlainValidator(parse_rate),
    PlainSerializer(str, return_type=str),
    WithJsonSchema({
        "type": "string", "format": "rate",
        "description": "a rate, e.g. '10/second', '1000/hour', '100/10s'",
        "examples": ["60/minute", "10/second"],
    }),
]
"""A `units.Rate(limit, period)`, written `10/second`, `1000/hour`, `100/10s`."""


# -- host:port ------------------------------------------------------------------------------

_HOST = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+|\*)$")


def check_address(value: str) -> str:
    """`host:port` with a port in 1..65535; an IPv6 host goes in brackets: `[::1]:8000`."""
    text = value.strip()
    host, sep, port = text.rpartition(":")
    if text.isdigit():  # `listen: 8000`: which host is for the user to say
        raise ValueError(f"a port alone is not an address: {_address_forms(text)}")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"expected host:port, e.g. '127.0.0.1:8000', got {value!r}")
    if not _HOST.match(host):
        raise ValueError(f"invalid host {host!r} in {value!r} (write IPv6 as '[::1]:8000')")
    if not 1 <= int(port) <= 65535:
        raise ValueError(f"port must be 1..65535, got {port} in {value!r}")
    return text


def split_address(address: str) -> tuple[str, int]:
    """`"[::1]:8000"` -> `("::1", 8000)`; the address must have passed `check_address`."""
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


Address = Annotated[
    str,
    AfterValidator(check_address),
    WithJsonSchema({
        "type": "string", "format": "host:port",
        "description": "host:port, e.g. '127.0.0.1:8000' or '[::1]:8000'",
    }),
]


def _address_forms(port: str) -> str:
    return (f"write '127.0.0.1:{port}' (this machine only) or '0.0.0.0:{port}' (every "
            "interface)")


def _one_or_many(value: Any) -> Any:
    if isinstance(value, str):
        return [value]
    if isinstance(value, int) and not isinstance(value, bool):
        raise ValueError(f"a port alone is not an address: {_address_forms(str(value))}; "
                         "a list of such addresses is accepted too")
    if not isinstance(value, list):
        raise ValueError("expected host:port or a list of them, e.g. '127.0.0.1:8000', got "
                         f"{type(value).__name__}")
    return value


Addresses = Annotated[
    list[Address],
    BeforeValidator(_one_or_many),
    Field(min_length=1),
    WithJsonSchema({
        "anyOf": [
            {"type": "string", "format": "host:port"},
            {"type": "array", "items": {"type": "string", "format": "host:port"}, "minItems": 1},
        ],
        "description": "one host:port or a list of them",
    }),
]
"""A list of host:port; a single string is a one-item list."""


# -- HTTP bits ------------------------------------------------------------------------------


def parse_status_range(value: Any) -> tuple[int, int]:
    """`"200-399"` -> (200, 399); `200` or `"200"` -> (200, 200)."""
    if isinstance(value, list | tuple) and len(value) == 2:
        low, high = value
    elif isinstance(value, int) and not isinstance(value, bool):
        low = high = value
    elif isinstance(value, str) and re.fullmatch(r"\s*\d{3}\s*(-\s*\d{3}\s*)?", value):
        low, _, high = value.partition("-")
        high = high or low
    else:
        raise ValueError(f"expected a status code or a range like '200-399', got {value!r}")
    low, high = int(low), int(high)
    if not 100 <= low <= high <= 599:
        raise ValueError(f"expected statuses within 100..599, low to high, got {value!r}")
    return low, high


StatusRange = Annotated[
    tuple[int, int],
    BeforeValidator(parse_status_range),
    PlainSerializer(lambda r: f"{r[0]}-{r[1]}", return_type=str),
    WithJsonSchema({
        "anyOf": [
            {"type": "string", "pattern": r"^\d{3}(-\d{3})?$"},
            {"type": "integer", "minimum": 100, "maximum": 599},
        ],
        "description": "a status code or an inclusive range, e.g. '200-399'",
    }),
]

HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH")


def check_method(value: str) -> str:
    method = value.strip().upper()
    if method not in HTTP_METHODS:
        raise ValueError(f"unknown HTTP method {value!r}; use one of {', '.join(HTTP_METHODS)}")
    return method


Method = Annotated[
    str,
    AfterValidator(check_method),
    WithJsonSchema({"type": "string", "description": "an HTTP method, e.g. GET"}),
]

def check_token(value: str) -> str:
    if not TOKEN.match(value):
        raise ValueError(f"{value!r} is not a valid header or cookie name")
    return value


def request_key(
    plain: tuple[str, ...], prefixed: tuple[str, ...]
) -> tuple[AfterValidator, WithJsonSchema]:
    """The validator and schema of a type for keys like `ip`, `path`, `header:NAME`,
    `cookie:NAME`: returned as metadata for `Annotated[str, ...]` written out where the type is
    named, so that type checkers (mypyc's pass included) read it as an alias of `str`."""
    forms = [*plain, *(f"{p}:NAME" for p in prefixed)]

    def check(value: str) -> str:
        return check_request_key(value, plain, prefixed)

    return (AfterValidator(check),
            WithJsonSchema({"type": "string", "description": " | ".join(forms)}))


_HASH_CHECK, _HASH_SCHEMA = request_key(("ip", "path"), ("header", "cookie"))
HashKey = Annotated[str, _HASH_CHECK, _HASH_SCHEMA]
"""What `balance: hash` hashes on."""
_CLIENT_CHECK, _CLIENT_SCHEMA = request_key(*CLIENT_KEY_FORMS)
ClientKey = Annotated[str, _CLIENT_CHECK, _CLIENT_SCHEMA]
"""Who a request counts against for rate limiting."""


# -- names ----------------------------------------------------------------------------------

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def check_name(value: str) -> str:
    if not _NAME.match(value):
        raise ValueError(
            f"invalid name {value!r}: use letters, digits, '_', '.', '-', starting with a "
            "letter or digit"
        )
    return value


Name = Annotated[str, AfterValidator(check_name)]
"""A name the user chooses (a service, plan, queue, worker); it appears in URLs and metrics."""
