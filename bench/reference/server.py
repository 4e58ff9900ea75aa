"""A minimal Flask-SocketIO + gevent server: what a Flask team would otherwise deploy, for the benchmark to
compare our handshakes (and, later, our fan-out) with in the same run.

It accepts the access tokens our server issues: HS256 with the same JWT_SECRET_KEY, and the issuer and
audience our configuration uses by default (JWT_ISSUER, JWT_AUDIENCE override them as they do ours). A
client connects with Socket.IO auth `{"token": "..."}`; a bad or missing token is refused. On connect the
client joins its user's room and gets `connection_established`; an `emotion_update` event is relayed to
every connection of the user. It decodes the JWT and nothing else: no database, no revocation check.

Served as Flask-SocketIO documents for gevent (simple-websocket carries the WebSocket), from this folder:

    gunicorn -k gevent -w 1 -b 127.0.0.1:8001 server:app
"""
import os
import time

import jwt
from flask import Flask, request
from flask_socketio import ConnectionRefusedError, SocketIO, emit, join_room

SECRET = os.environ["JWT_SECRET_KEY"]
ISSUER = os.environ.get("JWT_ISSUER") or "emotion_app"
AUDIENCE = os.environ.get("JWT_AUDIENCE") or "emotion_app"

app = Flask(__name__)
socketio = SocketIO(app, async_mode="gevent")
users = {}  # Socket.IO sid -> user id


@app.get("/healthz")
def healthz():
    return {"status": "ok"}


@socketio.on("connect")
def connect(auth):
    token = (auth or {}).get("token") if isinstance(auth, dict) else None
    try:
        claims = jwt.decode(token or "", SECRET, algorithms=["HS256"], issuer=ISSUER, audience=AUDIENCE,
                            options={"require": ["exp", "sub"]})
    except jwt.PyJWTError:
        raise ConnectionRefusedError("invalid token") from None
    if claims.get("type") != "access":
        raise ConnectionRefusedError("not an access token")
    user_id = claims["sub"]
    users[request.sid] = user_id
    join_room(f"user:{user_id}")
    emit("connection_established", {"user_id": int(user_id), "server_time": time.time()})


@socketio.on("disconnect")
def disconnect(*_reason):
    users.pop(request.sid, None)


@socketio.on("emotion_update")
def emotion_update(data):
    user_id = users.get(request.sid)
    if user_id is None or not isinstance(data, dict):
        return
    emit("emotion_update", {"user_id": int(user_id), "emotion": data.get("emotion"),
                            "client_msg_id": data.get("client_msg_id"), "created_at": time.time()},
         to=f"user:{user_id}")
