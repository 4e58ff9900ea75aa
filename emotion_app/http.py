"""Reading JSON request bodies and query strings, checked against their models, with precise errors."""
from flask import current_app, g, request

from .contract.validation import FrameError, check
from .errors import ApiError
from .messages import loads


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


def checked_body(model, fields=None):
    """The JSON body (or `fields`, e.g. a form's) validated as `model`, or one 400 naming every invalid field."""
    try:
        return check(model, json_object() if fields is None else fields, current_app.config)
    except FrameError as exc:
        raise ApiError(400, exc.code, exc.message, field=exc.field, fields=exc.problems) from None


def checked_query(model):
    """The query string validated as `model` (its first value of each parameter), or the 400 that says why."""
    try:
        return check(model, request.args.to_dict(), current_app.config, noun="Query parameter")
    except FrameError as exc:
        code = "invalid_parameter" if exc.code in ("invalid_field", "missing_field") else exc.code
        raise ApiError(400, code, exc.message, field=exc.field) from None
