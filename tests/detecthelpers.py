"""Helpers for the detection tests: the face fixtures, a PNG that lies about its size, and multipart bodies
for the live servers (urllib has no form encoder)."""
import json
import struct
import urllib.error
import urllib.request
import uuid
import zlib
from pathlib import Path

FACES = Path(__file__).resolve().parent.parent / "data" / "detection" / "faces"


def face_file(name):
    """The bytes of a fixture in data/detection/faces/."""
    return (FACES / name).read_bytes()


def png_claiming(width, height):
    """A tiny grey PNG whose header claims width x height (its one IDAT holds a single row)."""
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


def multipart(fields=None, image=None, filename="photo.jpg"):
    """(body, content type) of a multipart/form-data request with text `fields` and an `image` file."""
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in (fields or {}).items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    if image is not None:
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{filename}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n".encode() + image + b"\r\n"
        )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def post_detect(server, token, image=None, apply=None, timeout=30, **fields):
    """POST /api/emotions/detect to a live server: multipart with an image, else JSON; (status, body)."""
    path = "/api/emotions/detect" + (f"?apply={apply}" if apply is not None else "")
    if image is None:
        return server.request("POST", path, fields, token=token, timeout=timeout)
    body, content_type = multipart(fields, image)
    req = urllib.request.Request(
        server.url + path, data=body, method="POST",
        headers={"Content-Type": content_type, "Authorization": f"Bearer {token}"},
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())
