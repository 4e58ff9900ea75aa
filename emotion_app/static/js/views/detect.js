// "Detect how you feel": a sentence, a webcam snapshot or a photo goes to the server's detector; the page
// shows each emotion's score as a bar, the top one and how sure it is, and applies it with one click.
//
// The camera runs only between "Start the camera" and the snapshot (or "Stop the camera", leaving the
// page, logging out, or two idle minutes). Applying sends the same input again with `apply=always` and a
// `client_msg_id` made once per detection: clicking twice, or retrying after a network error, stores it once.
import { scoreBars } from "../charts.js";
import { percent } from "../format.js";
import { title } from "../palette.js";
import { newId } from "../socket.js";

const CAMERA_IDLE_MS = 120_000;
const BASIS = {
  text: "Based on the sentence.",
  face: "Based on the face.",
  "text+face": "Based on the sentence and the face (their scores averaged).",
};

/** The detect panel. `device()` names this device (stored with an applied emotion); `onApplied(event)`
 * gets the stored event at once (the socket brings it too, to every device). */
export class Detect {
  constructor({ api, vocabulary, palette, device, onApplied }) {
    Object.assign(this, { api, vocabulary, palette, device, onApplied });
    const $ = (id) => document.getElementById(id);
    this.el = {
      form: $("detect-form"), text: $("detect-text"), textButton: $("detect-text-button"),
      start: $("camera-start"), snap: $("camera-snap"), stop: $("camera-stop"), video: $("camera-video"),
      file: $("detect-file"), combine: $("detect-combine"), picture: $("detect-picture"),
      status: $("detect-status"), summary: $("detect-summary"), emoji: $("detect-emoji"),
      emotion: $("detect-emotion"), confidence: $("detect-confidence"), uncertain: $("detect-uncertain"),
      basis: $("detect-basis"), faces: $("detect-faces"), error: $("detect-error"), figure: $("detect-figure"),
      chart: $("detect-chart"), apply: $("detect-apply"), applied: $("detect-applied"), models: $("detect-models"),
    };
    this.input = null;   // what the result shown was detected from: {text, image, imageName, clientMsgId}
    this.shown = null;   // that result
    this.image = null;   // the picture on the canvas (an ImageBitmap)
    this.stream = null;  // the camera, while it runs
    this._request = 0;
    this._busy = false;
    this._idle = null;

    const { el } = this;
    el.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.detectText();
    });
    el.text.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
        event.preventDefault();
        this.detectText();
      }
    });
    el.start.addEventListener("click", () => this.startCamera());
    el.snap.addEventListener("click", () => this.snapshot());
    el.stop.addEventListener("click", () => this.stopCamera());
    el.file.addEventListener("change", () => {
      const [file] = el.file.files;
      el.file.value = ""; // choosing the same file again is a new detection
      if (file) this.detectFile(file);
    });
    el.apply.addEventListener("click", () => this.apply());
    document.addEventListener("visibilitychange", () => { if (document.hidden) this.stopCamera(); });
  }

  /** Detect from the sentence typed. */
  detectText() {
    const text = this.el.text.value.trim();
    if (!text) {
      this._fail("Write a sentence first.");
      this.el.text.focus();
      return;
    }
    this._detect({ text });
  }

  /** Detect from a photo the user chose (shown on the canvas when the browser can read it). */
  async detectFile(file) {
    this.stopCamera();
    let image = null;
    try {
      image = await createImageBitmap(file);
    } catch {
      // Not a picture this browser reads: the server says what is wrong with it.
    }
    this._showPicture(image);
    this._detect({ image: file, imageName: file.name || "photo", text: this._sentenceToo() });
  }

  /** Ask for the camera and show its picture; the snapshot button works once frames arrive. */
  async startCamera() {
    const { el } = this;
    if (this.stream) return;
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      this._fail("This browser offers no camera to this page (a camera needs HTTPS, or localhost).");
      return;
    }
    this._fail("");
    el.start.disabled = true;
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({
        video: { width: { ideal: 640 }, height: { ideal: 480 }, facingMode: "user" }, audio: false,
      });
    } catch (err) {
      el.start.disabled = false;
      this._fail(cameraProblem(err));
      return;
    }
    this.stream = stream;
    el.video.srcObject = stream;
    el.video.hidden = false;
    el.picture.hidden = true;
    el.start.hidden = true;
    el.start.disabled = false;
    el.snap.hidden = false;
    el.snap.disabled = true;
    el.stop.hidden = false;
    this._touchCamera();
    try {
      await el.video.play();
      await framesShown(el.video, 3); // a camera's first frames can be dark or blank
    } catch {
      // Stopped meanwhile.
    }
    if (this.stream === stream) {
      el.snap.disabled = this._busy;
      el.snap.focus();
    }
  }

  /** Stop the camera (and its light) if it runs. */
  stopCamera() {
    clearTimeout(this._idle);
    if (!this.stream) return;
    for (const track of this.stream.getTracks()) track.stop();
    this.stream = null;
    const { el } = this;
    el.video.pause();
    el.video.srcObject = null;
    el.video.hidden = true;
    el.snap.hidden = true;
    el.stop.hidden = true;
    el.start.hidden = false;
    el.picture.hidden = !this.image;
  }

  /** Draw the camera's current frame, stop the camera, send the frame as JPEG. */
  async snapshot() {
    const { video } = this.el;
    if (!this.stream || !video.videoWidth) return;
    const frame = document.createElement("canvas");
    frame.width = video.videoWidth;
    frame.height = video.videoHeight;
    frame.getContext("2d").drawImage(video, 0, 0);
    this.stopCamera();
    const [blob, image] = await Promise.all([
      new Promise((resolve) => frame.toBlob(resolve, "image/jpeg", 0.9)),
      createImageBitmap(frame),
    ]);
    this._showPicture(image);
    this.el.start.textContent = "Start the camera again";
    this._detect({ image: blob, imageName: "snapshot.jpg", text: this._sentenceToo() });
  }

  /** Store the result shown as the current emotion (even if uncertain: the user chose it). */
  async apply() {
    const { input, el } = this;
    if (!input || this._busy) return;
    const request = this._request;
    el.apply.disabled = true;
    this._fail("");
    el.applied.textContent = "Applying…";
    try {
      const answer = await this.api.detect({ ...input, apply: "always", device: this.device() });
      if (request !== this._request) return;
      if (!answer.applied || !answer.event) {
        el.applied.textContent = `Not applied (${answer.not_applied || "the server stored nothing"}).`;
        el.apply.disabled = false;
        return;
      }
      const name = title(answer.event.emotion);
      el.applied.textContent = answer.event.duplicate ? `${name} was already applied.` : `Applied: ${name} is your emotion now.`;
      el.apply.textContent = "Applied";
      this.onApplied(answer.event);
    } catch (err) {
      if (request !== this._request) return;
      el.applied.textContent = "";
      this._fail(explain(err));
      el.apply.disabled = false; // a retry sends the same id: stored once however often it is tried
    }
  }

  /** Forget everything shown and stop the camera (logging out). */
  reset() {
    this.stopCamera();
    this._request++;
    this._setBusy(false);
    this.input = null;
    this.shown = null;
    this.image = null;
    const { el } = this;
    el.text.value = "";
    el.combine.checked = false;
    el.picture.hidden = true;
    el.start.textContent = "Start the camera";
    el.status.textContent = "Nothing detected yet.";
    el.status.hidden = false;
    this._fail("");
    this._hideResult();
  }

  // ---- internals ---------------------------------------------------------------------------------

  _sentenceToo() {
    const text = this.el.text.value.trim();
    return this.el.combine.checked && text ? text : undefined;
  }

  async _detect(input) {
    const request = ++this._request;
    const { el } = this;
    this._fail("");
    this._hideResult();
    el.status.hidden = false;
    el.status.textContent = input.image ? "Looking at the picture…" : "Reading the sentence…";
    this._setBusy(true);
    try {
      const answer = await this.api.detect(input);
      if (request !== this._request) return;
      this.input = { ...input, clientMsgId: newId() };
      this._render(answer);
    } catch (err) {
      if (request !== this._request) return;
      el.status.textContent = "Nothing detected.";
      this._fail(explain(err));
      this._drawBoxes([]);
    } finally {
      if (request === this._request) this._setBusy(false);
    }
  }

  _render(answer) {
    const { el } = this;
    this.shown = answer;
    const look = this.palette[answer.emotion] || { emoji: "•", color: "" };
    el.status.hidden = true;
    el.summary.hidden = false;
    el.summary.dataset.emotion = answer.emotion;
    el.emoji.textContent = look.emoji;
    el.emoji.style.borderColor = look.color;
    el.emotion.textContent = title(answer.emotion);
    el.confidence.textContent = `${percent(answer.confidence)} sure`;
    el.uncertain.hidden = !answer.uncertain;
    el.uncertain.title = answer.threshold != null ? `Below the ${percent(answer.threshold)} the server trusts` : "";

    const parts = [BASIS[answer.based_on] || `Based on: ${answer.based_on}.`];
    const face = answer.faces && answer.faces[0];
    if (answer.based_on === "text+face" && answer.text && face) {
      parts.push(`The sentence alone: ${title(answer.text.emotion)} ${percent(answer.text.confidence)};` +
        ` the face alone: ${title(face.emotion)} ${percent(face.confidence)}.`);
    }
    el.basis.textContent = parts.join(" ");
    el.basis.hidden = false;

    const faces = answer.faces;
    el.faces.hidden = !faces;
    if (faces) {
      el.faces.textContent = faces.length === 0 ? "No face found in the picture."
        : faces.length === 1 ? "1 face found."
          : `${faces.length} faces found; the largest one counts.`;
    }
    this._drawBoxes(faces || []);

    const scores = this.vocabulary.map((emotion) => Number((answer.scores || {})[emotion]) || 0);
    el.figure.hidden = false;
    scoreBars(el.chart, this.vocabulary.map((emotion) => `${(this.palette[emotion] || {}).emoji || ""} ${title(emotion)}`),
      scores, this.vocabulary.map((emotion) => (this.palette[emotion] || {}).color || "#999999"));
    const ranked = this.vocabulary.map((emotion, i) => [emotion, scores[i]]).sort((a, b) => b[1] - a[1]);
    el.chart.setAttribute("aria-label", "Score of each emotion: " +
      ranked.map(([emotion, score]) => `${emotion} ${percent(score)}`).join(", "));

    el.apply.hidden = false;
    el.apply.disabled = false;
    el.apply.textContent = `Apply “${title(answer.emotion)}”`;
    el.applied.textContent = "";
    const models = Object.entries(answer.models || {}).map(([kind, name]) => `${kind}: ${name}`);
    el.models.hidden = !models.length;
    el.models.textContent = models.length ? `Models: ${models.join("; ")}.` : "";
  }

  _hideResult() {
    const { el } = this;
    this.shown = null;
    el.summary.hidden = true;
    el.basis.hidden = true;
    el.faces.hidden = true;
    el.figure.hidden = true;
    el.apply.hidden = true;
    el.apply.disabled = true;
    el.applied.textContent = "";
    el.models.hidden = true;
  }

  _setBusy(busy) {
    this._busy = busy;
    const { el } = this;
    el.textButton.disabled = busy;
    el.file.disabled = busy;
    el.snap.disabled = busy || !this.stream;
  }

  _fail(message) {
    this.el.error.textContent = message;
  }

  _touchCamera() {
    clearTimeout(this._idle);
    this._idle = setTimeout(() => {
      if (!this.stream) return;
      this.stopCamera();
      this.el.status.hidden = false;
      this.el.status.textContent = "The camera was stopped after two minutes without a snapshot.";
    }, CAMERA_IDLE_MS);
  }

  /** Show `image` (an ImageBitmap, or null for none) on the picture canvas, at most 640 px wide. */
  _showPicture(image) {
    if (this.image && this.image !== image) this.image.close();
    this.image = image;
    this._drawBoxes([]);
    this.el.picture.hidden = !image || Boolean(this.stream);
  }

  /** Draw the picture with a frame around each face found (boxes are in the picture's pixels). */
  _drawBoxes(faces) {
    const { image } = this;
    const canvas = this.el.picture;
    if (!image) return;
    const scale = Math.min(1, 640 / image.width);
    canvas.width = Math.round(image.width * scale);
    canvas.height = Math.round(image.height * scale);
    const context = canvas.getContext("2d");
    context.drawImage(image, 0, 0, canvas.width, canvas.height);
    faces.forEach(({ box, emotion }, index) => {
      const [x, y, w, h] = [box.x, box.y, box.width, box.height].map((v) => v * scale);
      // Light inside dark: visible on any skin or background.
      context.lineWidth = 4;
      context.strokeStyle = "rgba(0, 0, 0, 0.7)";
      context.strokeRect(x, y, w, h);
      context.lineWidth = 2;
      context.strokeStyle = index === 0 ? "#ffffff" : "#bbbbbb";
      context.strokeRect(x, y, w, h);
      context.font = "600 14px system-ui, sans-serif";
      context.fillStyle = "#ffffff";
      context.strokeStyle = "rgba(0, 0, 0, 0.8)";
      context.lineWidth = 3;
      const label = title(emotion);
      context.strokeText(label, x + 2, Math.max(14, y - 4));
      context.fillText(label, x + 2, Math.max(14, y - 4));
    });
    const found = faces.length ? `, ${faces.length === 1 ? "1 face" : `${faces.length} faces`} framed` : "";
    canvas.setAttribute("aria-label", `The picture sent${found}`);
  }
}

/** What went wrong with a detection, in words for the user. */
export function explain(err) {
  const limit = /at most (\d+)|more than (\d+)|larger than (\d+)/.exec(err.message || "");
  const number = limit ? Number(limit[1] || limit[2] || limit[3]) : null;
  switch (err.code) {
    case "no_face_found": return "No face found in the picture. Face the camera in good light, or choose another photo.";
    case "rate_limited": return `Too many detections in a short time: try again in ${Math.ceil(err.retryAfter || 60)} s.`;
    case "detection_disabled": return "Detection is switched off on this server.";
    case "detection_unavailable": return err.message || "Detection is not available on this server.";
    case "text_too_long": return `The sentence is too long${number ? `: at most ${number} characters` : ""}.`;
    case "image_too_large": return `The picture is too large${number ? `: at most ${megabytes(number)}` : ""}.`;
    case "image_too_many_pixels":
      return `The picture has too many pixels${number ? `: at most ${(number / 1e6).toFixed(1)} megapixels` : ""}.`;
    case "unsupported_image_type": return "That file is not a JPEG, PNG or WebP picture.";
    case "image_undecodable": return "That picture cannot be read: the file may be damaged.";
    case "missing_input": return "Write a sentence or take a picture first.";
    default: return err.message || "Detection failed.";
  }
}

function megabytes(bytes) {
  if (bytes < 1048576) return `${Math.round(bytes / 1024)} KB`;
  return `${Math.round((bytes / 1048576) * 10) / 10} MB`;
}

function cameraProblem(err) {
  switch (err && err.name) {
    case "NotAllowedError": return "The camera was not allowed: allow it for this site in the browser, then try again.";
    case "NotFoundError": case "OverconstrainedError": return "No camera found on this device.";
    case "NotReadableError": return "The camera is in use by another application.";
    default: return `The camera could not start (${(err && err.message) || err}).`;
  }
}

/** Resolves once `count` frames of `video` have been presented (or after 3 s whatever happens). */
function framesShown(video, count) {
  return new Promise((resolve) => {
    setTimeout(resolve, typeof video.requestVideoFrameCallback === "function" ? 3000 : 300);
    if (typeof video.requestVideoFrameCallback !== "function") return;
    let seen = 0;
    const next = () => video.requestVideoFrameCallback(() => (++seen >= count ? resolve() : next()));
    next();
  });
}
