"""Checking input against its model, with the service's error codes and messages.

A failed check is a FrameError: its `code` (missing_field, invalid_field, or a code a field declares),
the first invalid `field`, a `message` for people, and every invalid field in `problems`. The words of a
message come from the field's `Must`, which also describes the field in the published documents.
"""
from typing import get_args

from pydantic import ValidationError
from pydantic_core import PydanticCustomError

from .codes import ERROR_CODES


class FrameError(Exception):
    """A client frame, body or query that cannot be accepted; `message` is what the client is told."""

    def __init__(self, code, message, field=None, problems=None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field
        self.problems = problems or ({field: message} if field else {})
        self.request_id = None  # of a refused `detect` frame, for its error frame


class Must:
    """What a field must be, in words ("a string of 1-64 characters"): its description in the documents and
    the message of the error it fails with. `code` replaces invalid_field as that error's code."""

    def __init__(self, rule, code="invalid_field", doc=None):
        self.rule = rule
        self.code = code
        self.doc = doc

    def __get_pydantic_json_schema__(self, core_schema, handler):
        schema = handler(core_schema)
        if "description" not in schema:
            schema["description"] = self.doc or f"{self.rule[:1].upper()}{self.rule[1:]}."
        return schema


class Setting:
    """A bound that is one of the server's settings (e.g. EMOTIONS as `enum`): the documents of a running
    server carry its value, filled in where the schema says `x-setting` (see documents.py)."""

    def __init__(self, name, keyword):
        self.name = name
        self.keyword = keyword

    def __get_pydantic_json_schema__(self, core_schema, handler):
        schema = handler(core_schema)
        schema["x-setting"] = {self.keyword: self.name}
        return schema


def refuse(code, message):
    """The error a field validator raises: our `code` and `message`, as they reach the client."""
    # No context: the message is sent as it is, never formatted (it may quote the client's input).
    return PydanticCustomError(code, message)


def check(model, data, settings=None, noun="Field"):
    """`data` (a dict) validated as `model`, or FrameError. `settings` (the app's config) carries the bounds
    that are settings, for the validators that need them; `noun` names what the fields are in messages."""
    try:
        return model.model_validate(data, context=settings)
    except ValidationError as exc:
        raise _frame_error(model, exc, noun) from None


def _frame_error(model, exc, noun):
    problems = {}  # field -> (code, message); the first error of each field
    for error in exc.errors(include_url=False, include_context=False):
        field = str(error["loc"][0]) if error["loc"] else None
        if field not in problems:
            problems[field] = _explain(model, field, error, noun)
    field, (code, message) = next(iter(problems.items()))
    if len(problems) > 1:
        code, message = "invalid_field", f"Invalid fields: {', '.join(map(str, problems))}"
    return FrameError(code, message, field, {name: text for name, (_, text) in problems.items()})


def _explain(model, field, error, noun):
    must = _must(model, field)
    # null for a field that may not be null counts as leaving it out.
    if error["type"] == "missing" or (error["loc"] == (field,) and error.get("input", "") is None):
        return "missing_field", f"Missing {noun.lower()} '{field}'" + (f": it must be {must.rule}" if must else "")
    if error["type"] in ERROR_CODES:
        return error["type"], error["msg"]  # raised by one of our validators (refuse)
    if must is None:
        return "invalid_field", f"{noun} '{field}': {error['msg']}"
    return must.code, f"{noun} '{field}' must be {must.rule}"


def _must(model, field):
    info = _field_info(model, field) if field else None
    if info is None:
        return None
    for item in [*info.metadata, *_annotated_metadata(info.annotation)]:
        if isinstance(item, Must):
            return item
    return None


def _field_info(model, name):
    # A field named by its alias (`from`, a Python keyword) is found by it.
    info = model.model_fields.get(name)
    if info is None:
        info = next((i for i in model.model_fields.values() if i.alias == name), None)
    return info


def _annotated_metadata(annotation):
    # An optional field's Must sits inside the union: `Annotated[str, Must(...)] | None`.
    found = []
    for arg in get_args(annotation):
        found.extend(getattr(arg, "__metadata__", ()))
    return found
