"""`/`: the browser test page (plain HTML and JavaScript, no build step)."""
from flask import Blueprint, current_app, render_template

bp = Blueprint("pages", __name__)


@bp.get("/")
def index():
    """A page to log in, connect, watch the socket and set an emotion with one click."""
    return render_template("index.html", emotions=current_app.config["EMOTIONS"])
