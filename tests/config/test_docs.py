"""docs/config.md documents every key the models accept, and its generated tables are
current; the JSON Schema describes every key."""

from __future__ import annotations

import typing
from collections.abc import Iterator
from pathlib import Path

from pydantic import BaseModel

from surge.config import Config
from surge.config.problems import members, model_in
from surge.config.reference import BEGIN, END, markdown_tables
from surge.config.schema import json_schema

DOC = Path(__file__).resolve().parents[2] / "docs" / "config.md"


def _paths(model: type[BaseModel], prefix: str = "") -> Iterator[str]:
    """Every key path, written as the docs write it, found by walking the models."""
    for name, field in model.model_fields.items():
        path = f"{prefix}.{name}" if prefix else name
        yield path
        yield from _nested(field.annotation, path)


def _nested(annotation: object, path: str) -> Iterator[str]:
    for member in members(annotation):
        origin, args = typing.get_origin(member), typing.get_args(member)
        if origin is list:
            yield from _nested(args[0], f"{path}[]")
        elif origin is dict:
            yield from _nested(args[1], f"{path}.<name>")
        elif (model := model_in(member)) is not None:
            yield from _paths(model, path)


def test_the_doc_names_every_key_of_the_models():
    text = DOC.read_text()
    paths = sorted(set(_paths(Config)))
    assert len(paths) > 80
    missing = [p for p in paths if f"`{p}`" not in text]
    assert missing == []


def test_the_generated_key_tables_are_current():
    text = DOC.read_text()
    generated = text.split(BEGIN, 1)[1].split(END, 1)[0].strip()
    assert generated == markdown_tables(), "run: python -m surge.config.reference docs/config.md"


def test_every_key_in_the_schema_has_a_description():
    schema = json_schema()
    undocumented = [
        f"{model}.{key}" for model, body in schema["$defs"].items()
        for key, prop in _properties(body).items() if not prop.get("description")
    ]
    assert undocumented == []


def _properties(body: dict) -> dict:
    for branch in body.get("anyOf", ()):
        if "properties" in branch:
            return branch["properties"]
    return body.get("properties", {})


def test_unit_keys_show_in_the_schema_as_strings_or_numbers():
    timeouts = json_schema()["$defs"]["Timeouts"]["properties"]["connect"]
    kinds = {branch["type"] for branch in timeouts["anyOf"]}
    assert kinds == {"string", "number"}
    assert timeouts["anyOf"][0]["format"] == "duration" and timeouts["description"]


def _yaml(path: Path) -> dict:
    import yaml

    return yaml.safe_load(path.read_text())


def test_the_schema_is_valid_draft_2020_12_and_accepts_the_example_files():
    from jsonschema import Draft202012Validator

    Draft202012Validator.check_schema(json_schema())
    validator = Draft202012Validator(json_schema())
    for path in (Path(__file__).parent / "fixtures" / "config_md.yaml",
                 DOC.parents[1] / "examples" / "quickstart" / "surge.yaml"):
        assert [e.message for e in validator.iter_errors(_yaml(path))] == [], path


def test_the_schema_refuses_an_unknown_key_as_the_models_do():
    from jsonschema import Draft202012Validator

    validator = Draft202012Validator(json_schema())
    document = {"gateway": {"lisen": "127.0.0.1:8000"}}
    assert [list(e.path) for e in validator.iter_errors(document)] == [["gateway"]]


def _yaml_blocks(text: str) -> list[str]:
    return [block.split("```", 1)[0] for block in text.split("```yaml\n")[1:]]


def test_every_yaml_example_in_the_doc_is_valid_except_the_one_showing_problems():
    from surge.config import parse
    from surge.errors import ConfigError

    failing = []
    for block in _yaml_blocks(DOC.read_text()):
        try:
            parse(block, env={"API_HOST": "10.0.0.2"}, check_support=False)
        except ConfigError as error:
            failing.append(error.problems)
    assert failing == [[
        "gateway.admin: environment variable 'ADMIN' is not set",
        "gateway.workers: must be at least 1, got 0",
        "services.api.health.intervl: unknown key (did you mean 'interval'?)",
        "routes[1].service: unknown service 'ap' (did you mean 'api'?)",
    ]]
