"""The AsyncAPI 3 document of `/api/ws`, built from the frame models: the handshake's options, every frame
each way, and the close codes. It describes the server: it receives the client's frames and sends its own."""
from .documents import parameters, schemas
from .frames import CLIENT_FRAMES, SERVER_FRAMES, SocketQuery

# Close codes the server sends, and what a client should do.
CLOSE_CODES = {
    1008: "Ping timeout, or a socket that kept sending over its frame rate after being refused: reconnect with backoff.",
    1009: "A frame larger than WS_MAX_MESSAGE_BYTES.",
    1011: "Missed events could not be read (an error frame `replay_failed` says so first): reconnect with `since`.",
    1012: "The server is restarting: reconnect at once, with `since`.",
    4401: "The access token expired (an error frame `token_expired` says so first): reconnect with a fresh token, "
    "or send `refresh` before it expires.",
    4403: "The token was revoked (logout or a password change): log in again.",
}
# A client frame and the server frames that answer it.
REPLIES = {
    "emotion_update": ("emotion_update", "error"),
    "ping": ("pong", "error"),
    "sync": ("emotion_update", "synced", "error"),
    "refresh": ("refreshed", "error"),
    "detect": ("detected", "error"),
}
HANDSHAKE = (
    "Open with `GET /api/ws` and an access token: `?token=`, an `Authorization: Bearer` header, or a single-use "
    "`?ticket=` from POST /api/ws-ticket. A refused handshake is an HTTP error with the JSON `Error` body of "
    "the OpenAPI document, before any upgrade: 400 (a bad `since` or `device`), 401 (token or ticket), "
    "403 (origin), 429 (handshake rate, or too many sockets of the user), 503 (restarting or full). "
    "Once open, the first frame is `connection_established`; with `since`, the events after it follow, then "
    "`synced`; then every emotion change of the user, from any device."
)


def _message_id(direction, kind):
    return f"{direction}_{kind}"


def _in_channel(direction, kind):
    return {"$ref": f"#/channels/socket/messages/{_message_id(direction, kind)}"}


def _operation(action, direction, kind, replies=()):
    """The server receives a client's frame (and answers with one of `replies`), or sends one of its own."""
    operation = {
        "action": action,
        "channel": {"$ref": "#/channels/socket"},
        "summary": f"{'A client' if direction == 'client' else 'The server'} sends `{kind}`.",
        "messages": [_in_channel(direction, kind)],
    }
    if replies:
        operation["reply"] = {
            "channel": {"$ref": "#/channels/socket"},
            "messages": [_in_channel("server", reply) for reply in replies],
        }
    return operation


def asyncapi_document(config):
    """The document, with the settings of the server `config` belongs to (its vocabulary, its caps)."""
    incoming = [(model, "validation") for model in CLIENT_FRAMES.values()]
    outgoing = [(model, "serialization") for model in SERVER_FRAMES.values()]
    refs, components = schemas(incoming + outgoing, config)
    messages = {}
    for direction, frames in (("client", CLIENT_FRAMES), ("server", SERVER_FRAMES)):
        for kind, model in frames.items():
            doc = (model.__doc__ or "").strip()
            message = {
                "name": kind,
                "title": f"{kind} ({'client to server' if direction == 'client' else 'server to client'})",
                "payload": refs[model],
            }
            if doc:
                message["summary"] = doc.splitlines()[0]
                message["description"] = " ".join(doc.split())
            messages[_message_id(direction, kind)] = message
    channel_messages = {name: {"$ref": f"#/components/messages/{name}"} for name in messages}
    query = {
        "type": "object",
        "properties": {
            p["name"]: {**p["schema"], "description": p.get("description", "")} for p in parameters(SocketQuery, config)
        },
    }
    operations = {f"receive_{kind}": _operation("receive", "client", kind, REPLIES[kind]) for kind in CLIENT_FRAMES}
    operations.update({f"send_{kind}": _operation("send", "server", kind) for kind in SERVER_FRAMES})
    close_codes = "\n".join(f"- `{code}`: {meaning}" for code, meaning in CLOSE_CODES.items())
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "emotion_app socket",
            "version": "1",
            "description": (
                "The live socket of emotion_app: every change of a user's current emotion, made on any of their "
                "devices, is stored and sent to all of them. Frames are JSON text frames with a `type`. The HTTP "
                "API (log in, tokens, tickets) is described by the OpenAPI document at `/api/openapi.json`."
            ),
        },
        "servers": {
            "local": {
                "host": "localhost:8000", "protocol": "ws",
                "description": "`scripts/serve.sh` on this machine.",
            },
            "production": {
                "host": "your-server.com", "protocol": "wss",
                "description": "Behind a TLS-terminating proxy (see docs/deploy.md).",
            },
        },
        "defaultContentType": "application/json",
        "channels": {
            "socket": {
                "address": "/api/ws",
                "title": "The emotion socket",
                "description": f"{HANDSHAKE}\n\nClose codes the server sends:\n\n{close_codes}",
                "messages": channel_messages,
                "bindings": {
                    "ws": {
                        "method": "GET",
                        "query": query,
                        "headers": {
                            "type": "object",
                            "properties": {
                                "Authorization": {
                                    "type": "string", "pattern": "^Bearer .+$",
                                    "description": "`Bearer <access token>`, instead of `?token=` or `?ticket=`.",
                                },
                            },
                        },
                        "bindingVersion": "0.1.0",
                    }
                },
            }
        },
        "operations": operations,
        "components": {"schemas": components, "messages": messages},
        "x-close-codes": {str(code): meaning for code, meaning in CLOSE_CODES.items()},
    }
