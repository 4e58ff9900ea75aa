"""`/api/openapi.json` and `/api/asyncapi.json`: the documents of the HTTP API and of the socket, generated from
the models the server validates with (contract/), with this server's settings in them; and `/api/docs`, a page
that shows the OpenAPI one (Swagger UI, vendored in static/vendor/swagger-ui)."""
from flask import Blueprint, current_app, jsonify, render_template

from .contract.openapi import documented, openapi_document

bp = Blueprint("apidocs", __name__, url_prefix="/api")
DOCUMENT = ("The document.", {"application/json": {"schema": {"type": "object"}}})


def _cached(name, build):
    # Built on first request, once per app: the routes and settings do not change while it serves.
    documents = current_app.extensions.setdefault("emotion_documents", {})
    if name not in documents:
        documents[name] = build()
    return documents[name]


@bp.get("/openapi.json")
@documented("This document (OpenAPI 3.1)", "documents", auth=None, answers={200: DOCUMENT})
def openapi():
    """The OpenAPI 3.1 document of the HTTP API."""
    app = current_app._get_current_object()
    return jsonify(_cached("openapi", lambda: openapi_document(app)))


@bp.get("/asyncapi.json")
@documented("The socket's AsyncAPI 3 document", "documents", auth=None, answers={200: DOCUMENT})
def asyncapi():
    """The AsyncAPI 3 document of the socket `/api/ws`."""
    from .contract.asyncapi import asyncapi_document  # only when asked for (see openapi_document)

    return jsonify(_cached("asyncapi", lambda: asyncapi_document(current_app.config)))


@bp.get("/docs")
def docs():
    """The HTTP API, browsable (and callable with "Try it out"), for people."""
    return render_template("apidocs.html")
