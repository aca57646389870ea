"""The JSON Schema (draft 2020-12) of surge.yaml, generated from the models, for editors
and for `surge schema`. Unit fields show as the strings or numbers a user writes."""

from __future__ import annotations

from typing import Any

from surge.config.models import Config

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def json_schema() -> dict[str, Any]:
    """The schema of a whole surge.yaml (what it accepts, so `mode="validation"`)."""
    schema = Config.model_json_schema(mode="validation")
    return {"$schema": SCHEMA_DIALECT, "title": "surge.yaml", **{
        key: value for key, value in schema.items() if key != "title"
    }}
