"""Reading JSON request bodies with precise errors."""
from flask import request

from .errors import ApiError


def json_object():
    """Return the request body as a dict, or raise the 415/400 error that says what is wrong with it."""
    if not request.is_json:
        raise ApiError(415, "unsupported_media_type", "Content-Type must be application/json")
    body = request.get_json(silent=True)
    if body is None:
        raise ApiError(400, "malformed_json", "Request body is not valid JSON")
    if not isinstance(body, dict):
        raise ApiError(400, "malformed_json", "Request body must be a JSON object")
    return body


def invalid_fields(problems):
    """Raise one 400 that names every invalid field: `problems` maps field name to what is wrong."""
    names = ", ".join(problems)
    first = next(iter(problems.values()))
    message = first if len(problems) == 1 else f"Invalid fields: {names}"
    raise ApiError(400, "invalid_field", message, field=next(iter(problems)), fields=problems)
