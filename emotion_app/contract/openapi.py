"""The OpenAPI 3.1 document of the HTTP API, built from the models and from what each view declares with
`@documented`: the document of a running server names its own settings (its vocabulary, its caps)."""
from dataclasses import dataclass, field

from .bodies import Error

STATUS_TEXT = {
    400: "The body, a field or a parameter is invalid (`error` and `field` say which and why).",
    401: "No token, or a token that is malformed, expired, revoked, of the wrong kind, or of a deleted user.",
    403: "Not allowed.",
    409: "Conflict.",
    413: "The body is too large.",
    415: "The body's Content-Type is not one this endpoint takes.",
    422: "The input was read but holds nothing to work on.",
    429: "Too many requests: try again after `retry_after` seconds (also the `Retry-After` header).",
    500: "An unexpected error; nothing was stored.",
    503: "The database or the broker is unreachable (or a feature is off): try again shortly.",
}
# Every operation can fail these ways.
ALWAYS = (500, 503)
JSON_BODY = (400, 413, 415)
TOKEN = (401,)


@dataclass
class Operation:
    """What a view declares about itself for the document."""

    summary: str
    tag: str
    auth: str | None = "access"  # access, refresh, either, metrics, or None
    body: type | None = None
    body_optional: bool = False
    form: type | None = None  # the multipart form it also takes (then `body` also as a urlencoded form)
    query: type | None = None
    # status -> a model; (description, a model); or (description, {media type: {"schema": ...}})
    answers: dict = field(default_factory=dict)
    errors: tuple = ()
    links: dict = field(default_factory=dict)  # status -> OpenAPI links of that answer


def documented(summary, tag, **details):
    """Declare what a view takes and answers; the OpenAPI document is built from these declarations.

    Put it right above the function: the decorators above it keep its attributes (functools.wraps).
    """

    def declare(view):
        view.operation = Operation(summary, tag, **details)
        return view

    return declare


SECURITY = {
    "access": [{"bearer": []}],
    "refresh": [{"bearer": []}],
    "either": [{"bearer": []}],
    "metrics": [{"metricsToken": []}, {}],
    None: [],
}
TOKEN_KIND = {
    "access": "Takes the access token.",
    "refresh": "Takes the refresh token (not the access token).",
    "either": "Takes the access token or the refresh token.",
}


def openapi_document(app, skip=("static", "ws.emotion_socket", "pages.index", "apidocs.docs")):
    """The document of every route of `app` but those in `skip`: pages for people, and the socket (it has its
    AsyncAPI document)."""
    # Here, not at import: every view module imports `documented`, and pydantic's JSON Schema machinery is
    # needed only when a document is built.
    from .documents import parameters, schemas

    config = app.config
    operations = []
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        if rule.endpoint in skip:
            continue
        view = app.view_functions[rule.endpoint]
        operation = getattr(view, "operation", None)
        if operation is None:
            raise LookupError(f"{rule.endpoint} ({rule.rule}) is not @documented")
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            operations.append((rule, method, view, operation))
    models = {Error}
    for *_, operation in operations:
        answers = (answer[1] if isinstance(answer, tuple) else answer for answer in operation.answers.values())
        models.update(m for m in (operation.body, operation.form, *answers) if isinstance(m, type))
    refs, components = schemas(sorted(models, key=lambda m: m.__name__), config, mode="serialization")
    paths = {}
    for rule, method, view, operation in operations:
        path = rule.rule  # no path parameters: every route is a fixed path
        query = parameters(operation.query, config) if operation.query is not None else None
        paths.setdefault(path, {})[method.lower()] = _operation(rule, method, view, operation, refs, query)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "emotion_app HTTP API",
            "version": config.get("API_VERSION", "1"),
            "description": (
                "Log in, set and read the current emotion, its history, statistics and export, detect emotions, "
                "and see the devices online. The live socket `/api/ws` is described by the AsyncAPI document "
                "at `/api/asyncapi.json`. Every error has the `Error` shape."
            ),
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "metricsToken": {
                    "type": "http", "scheme": "bearer",
                    "description": "METRICS_TOKEN; without it set, /metrics answers private addresses only.",
                },
            },
        },
    }


def _operation(rule, method, view, operation, refs, query):
    doc = (view.__doc__ or "").strip()
    out = {
        "operationId": rule.endpoint.replace(".", "_"),
        "summary": operation.summary,
        "tags": [operation.tag],
        "security": SECURITY[operation.auth],
    }
    description = " ".join(part for part in (doc, TOKEN_KIND.get(operation.auth)) if part)
    if description:
        out["description"] = description
    if query is not None:
        out["parameters"] = query
    statuses = set(ALWAYS) | set(operation.errors)
    if operation.auth in TOKEN_KIND:
        statuses |= set(TOKEN)
    if operation.body is not None:
        content = {"application/json": {"schema": refs[operation.body]}}
        if operation.form is not None:
            content["multipart/form-data"] = {"schema": refs[operation.form]}
            content["application/x-www-form-urlencoded"] = {"schema": refs[operation.body]}
        out["requestBody"] = {"required": not operation.body_optional, "content": content}
        statuses |= set(JSON_BODY)
    if operation.query is not None:
        statuses.add(400)
    responses = {}
    for status, answer in operation.answers.items():
        responses[str(status)] = _answer(status, answer, refs)
        if status in operation.links:
            responses[str(status)]["links"] = operation.links[status]
    for status in sorted(statuses):
        responses.setdefault(str(status), _error(status, refs))
    out["responses"] = dict(sorted(responses.items()))
    return out


def _answer(status, answer, refs):
    description, content = answer if isinstance(answer, tuple) else (None, answer)
    if isinstance(content, type):
        description = description or (content.__doc__ or "OK").strip().splitlines()[0]
        content = {"application/json": {"schema": refs[content]}}
    return {"description": description, "content": content}


def _error(status, refs):
    response = {
        "description": STATUS_TEXT[status],
        "content": {"application/json": {"schema": refs[Error]}},
    }
    if status == 429:
        response["headers"] = {
            "Retry-After": {"description": "Seconds to wait.", "schema": {"type": "integer", "minimum": 1}}
        }
    return response
