"""Reading JSON request bodies with precise errors."""
from flask import g, request

from .errors import ApiError
from .messages import FrameError, loads


def json_object(any_content_type=False):
    """Return the request body as a dict, or raise the 415/400 error that says what is wrong with it.

    The body must be labelled application/json unless `any_content_type` (the caller has decided it is JSON).
    """
    if not (request.is_json or any_content_type):
        raise ApiError(415, "unsupported_media_type", "Content-Type must be application/json")
    if "json_body" not in g:
        try:
            g.json_body = loads(request.get_data())
        except FrameError as exc:
            raise ApiError(400, exc.code, exc.message) from None
        except ValueError:
            raise ApiError(400, "malformed_json", "Request body is not valid JSON") from None
    if not isinstance(g.json_body, dict):
        raise ApiError(400, "malformed_json", "Request body must be a JSON object")
    return g.json_body


def json_object_or_none():
    """The request body as a dict, or None whatever is wrong with it (for code that must not fail)."""
    try:
        return json_object()
    except ApiError:
        return None


def invalid_fields(problems):
    """Raise one 400 that names every invalid field: `problems` maps field name to what is wrong."""
    names = ", ".join(problems)
    first = next(iter(problems.values()))
    message = first if len(problems) == 1 else f"Invalid fields: {names}"
    raise ApiError(400, "invalid_field", message, field=next(iter(problems)), fields=problems)
