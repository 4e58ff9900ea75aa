"""`POST /api/emotions/detect`: the emotion of a text (JSON or a form field), of a photo (a multipart file), or
of both; `?apply=true|always` also sets it as the user's current emotion."""
from flask import Blueprint, current_app, jsonify, request
from flask_jwt_extended import get_jwt_identity, jwt_required
from werkzeug.exceptions import RequestEntityTooLarge

from ..errors import ApiError
from ..extensions import db
from ..contract.bodies import DetectBody, DetectForm, DetectQuery, Detection
from ..contract.openapi import documented
from ..http import checked_query, json_object
from .request import APPLY_MODES, checked_fields, handle

bp = Blueprint("detection", __name__)

# Room in a multipart body besides the image: part headers, boundaries and the small fields.
FORM_ALLOWANCE = 64 * 1024
# A JSON string may spend up to 12 bytes on one character ("\ud83d\ude00" is one emoji, two of them).
JSON_BYTES_PER_CHAR = 12


@bp.post("/api/emotions/detect")
@jwt_required()
@documented(
    "Detect the emotion of a text, a photo, or both", "detection", query=DetectQuery, body=DetectBody, form=DetectForm,
    answers={200: Detection}, errors=(413, 415, 422, 429),
)
def detect():
    """Detect the emotion of a text or a photo for the caller; store it too with `?apply=`."""
    current_app.extensions["emotion_detector"].require_enabled()
    req = _read_body(current_app.config, _apply_mode())
    # Hand the token check's pooled connection back before the detection waits on the models.
    db.session.commit()
    return jsonify(handle(current_app, int(get_jwt_identity()), req))


def _apply_mode():
    return APPLY_MODES[checked_query(DetectQuery).apply]


def _read_body(config, apply):
    """The request's fields and image as a DetectRequest, within this route's own size caps."""
    max_text = config["DETECT_MAX_TEXT"]
    if request.mimetype == "multipart/form-data":
        max_image = config["DETECT_MAX_IMAGE_BYTES"]
        # This route's cap, above MAX_BODY_BYTES: the image, plus the text and the form's framing.
        request.max_content_length = max_image + JSON_BYTES_PER_CHAR * max_text + FORM_ALLOWANCE
        try:
            form, files = request.form, request.files
        except RequestEntityTooLarge:
            raise _image_too_large(max_image) from None
        return checked_fields(form.to_dict(), apply, _image(form, files, max_image))
    if not (request.is_json or request.mimetype == "application/x-www-form-urlencoded"):
        raise ApiError(
            415, "unsupported_media_type",
            "Content-Type must be application/json (a text) or multipart/form-data (an image file, a text, or both)",
        )
    # A text alone, whether JSON or a plain form (which carries no file).
    request.max_content_length = max(config["MAX_CONTENT_LENGTH"], JSON_BYTES_PER_CHAR * max_text + 1024)
    # `curl -d '{"text": ...}'` without a Content-Type header labels JSON as a plain form; a form field named
    # `{"text"` is never what was meant.
    if request.is_json or request.get_data(cache=True).lstrip()[:1] == b"{":
        body = json_object(any_content_type=True)
        if "image" in body:
            raise ApiError(
                400, "invalid_field", "Send a photo as multipart/form-data with an 'image' file, not in JSON",
                field="image",
            )
        return checked_fields(body, apply)
    form = request.form
    return checked_fields(form.to_dict(), apply, _image(form, request.files, config["DETECT_MAX_IMAGE_BYTES"]))


def _image(form, files, max_bytes):
    """The uploaded `image` file's bytes; None when there is none (or an empty one: a file input left empty)."""
    upload = files.get("image")
    if upload is None:
        if "image" in form:
            raise ApiError(400, "invalid_field", "Field 'image' must be a file upload", field="image")
        return None
    data = upload.stream.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise _image_too_large(max_bytes)
    return data or None


def _image_too_large(max_bytes):
    return ApiError(413, "image_too_large", f"The image is larger than {max_bytes} bytes")
