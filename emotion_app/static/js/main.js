// The page: log in, then the current emotion, the devices online, detection, the statistics and the timeline,
// all kept live by one EmotionSocket. Each part lives in its own module; this one wires them.
import { Api } from "./api.js";
import { createLog } from "./devpanel.js";
import { paletteFor } from "./palette.js";
import { EmotionSocket } from "./socket.js";
import { EMPTY, createStore } from "./state.js";
import { Detect } from "./views/detect.js";
import { mountDevices } from "./views/devices.js";
import { mountNow } from "./views/now.js";
import { Stats } from "./views/stats.js";
import { Timeline } from "./views/timeline.js";

const DEVICE_KEY = "emotion-sync-device";
const $ = (id) => document.getElementById(id);

const vocabulary = document.body.dataset.emotions.split(",").filter(Boolean);
const palette = paletteFor(vocabulary);
const store = createStore(EMPTY);
const log = createLog($("dev-log"), $("dev-clear"));
const api = new Api({ onLog: log, onSessionEnd: (message) => endSession(message) });
const timeline = new Timeline(api, palette, report);
const stats = new Stats(api, vocabulary, palette, report);
let deviceName = localStorage.getItem(DEVICE_KEY) || defaultDeviceName();
let socket = null;
const detect = new Detect({ api, vocabulary, palette, device: () => deviceName, onApplied: showUpdate });

mountNow(store, palette, setEmotion);
mountDevices(store, deviceName, rename);
mountStatus();

// ---- session --------------------------------------------------------------------------------------

$("auth-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.currentTarget;
  const register = event.submitter && event.submitter.value === "register";
  $("auth-error").textContent = "";
  form.querySelectorAll("button, input").forEach((node) => { node.disabled = true; });
  try {
    await api.login($("auth-username").value.trim(), $("auth-password").value, { register });
    $("auth-password").value = "";
    startSession();
  } catch (err) {
    $("auth-error").textContent = err.message;
  } finally {
    form.querySelectorAll("button, input").forEach((node) => { node.disabled = false; });
  }
});

$("logout").addEventListener("click", async () => {
  stopSocket();
  await api.logout();
  endSession("Logged out.");
});

function startSession() {
  store.set({ ...EMPTY, user: api.user });
  $("username").textContent = api.user ? api.user.username : "?";
  $("auth").hidden = true;
  $("whoami").hidden = false;
  $("app").hidden = false;
  notify("");
  api.current().then(showIfNewer, report);
  timeline.reload();
  stats.refresh();
  startSocket();
  $("now").querySelector("button").focus();
}

function endSession(message) {
  stopSocket();
  detect.reset();
  api.forget();
  store.set({ ...EMPTY });
  $("auth").hidden = false;
  $("whoami").hidden = true;
  $("app").hidden = true;
  notify(message, true);
  $("auth-username").focus();
}

// ---- the socket -------------------------------------------------------------------------------------

function startSocket() {
  socket = new EmotionSocket({
    ticket: () => api.ticket(),
    refreshToken: async () => ((await api.refresh()) ? api.session.access : null),
    device: deviceName,
  });
  const on = (type, fn) => socket.addEventListener(type, (event) => fn(event.detail));
  on("frame", ({ direction, text }) => log(direction, text));
  on("state", ({ state, retryAt, code, reason, message }) => {
    store.set({ connection: state, retryAt: retryAt || 0 });
    if (code) log("info", `Socket closed: ${code}${reason ? " " + reason : ""}`);
    if (state === "stopped" && (reason === "revoked" || reason === "unauthorized")) {
      endSession(`Your session has ended (${message || reason}): log in again.`);
    }
  });
  on("established", (frame) => {
    notify("");
    store.set({ online: frame.online || [], deviceId: frame.device ? frame.device.id : null });
    if (frame.current) showIfNewer(frame.current);
  });
  on("update", showUpdate);
  on("ack", () => store.set({ pending: [...socket.outbox.values()] }));
  on("presence", (frame) => store.set({ online: frame.online || [] }));
  on("reset", (frame) => {
    store.set({ current: frame.current });
    timeline.reload();
    stats.refresh();
  });
  on("server-error", (frame) => {
    // A refused in-band renewal needs no one's attention: the socket reconnects with a fresh ticket.
    if (!String(frame.code).startsWith("token_")) notify(`Server: ${frame.message}`, true);
  });
  socket.start();
}

function stopSocket() {
  if (socket) socket.stop("Disconnected by user");
  socket = null;
}

function setEmotion(emotion) {
  if (!socket) return;
  socket.set(emotion);
  store.set({ pending: [...socket.outbox.values()] });
}

/** A stored event, from the socket or from an applied detection (each shown once however it comes). */
function showUpdate(event) {
  timeline.add(event);
  showIfNewer(event);
  stats.refreshSoon();
}

function showIfNewer(event) {
  const { current } = store.get();
  if (event && event.id != null && (!current || current.id == null || event.id >= current.id)) store.set({ current: event });
}

function rename(name) {
  deviceName = name || defaultDeviceName();
  localStorage.setItem(DEVICE_KEY, deviceName);
  $("device-name").value = deviceName;
  if (socket) {
    socket.device = deviceName;
    socket.restart();
  }
}

function defaultDeviceName() {
  const platform = (navigator.userAgentData && navigator.userAgentData.platform) || "";
  return platform ? `Browser on ${platform}` : "Web browser";
}

// ---- status, notices, export, developer panel ---------------------------------------------------------

function mountStatus() {
  const status = $("status");
  const render = () => {
    const { connection, retryAt } = store.get();
    status.dataset.state = connection;
    const seconds = Math.max(0, Math.ceil((retryAt - Date.now()) / 1000));
    status.textContent = {
      connecting: "Connecting…",
      catching_up: "Catching up…",
      online: "Online",
      offline: retryAt ? `Offline: reconnecting in ${seconds} s` : "Offline: reconnecting…",
      stopped: "Offline",
    }[connection];
  };
  store.subscribe((state, changed) => {
    if (changed.includes("connection") || changed.includes("retryAt")) render();
  });
  setInterval(() => { if (store.get().connection === "offline") render(); }, 1000);
  render();
}

function notify(text, isError = false) {
  $("notice").textContent = text;
  $("notice").classList.toggle("is-error", isError);
}

function report(err) {
  if (api.session) notify(err.message, true);
}

async function download(format) {
  try {
    const response = await api.exportFile(format);
    const name = /filename="([^"]+)"/.exec(response.headers.get("Content-Disposition") || "");
    const url = URL.createObjectURL(await response.blob());
    const link = document.createElement("a");
    link.href = url;
    link.download = name ? name[1] : `emotions.${format}`;
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  } catch (err) {
    report(err);
  }
}

$("export-csv").addEventListener("click", () => download("csv"));
$("export-json").addEventListener("click", () => download("json"));
$("dev-reconnect").addEventListener("click", () => {
  if (socket) socket.restart();
  else if (api.session) startSocket();
});
$("dev-disconnect").addEventListener("click", stopSocket);
$("dev-ping").addEventListener("click", () => socket && socket.send({ type: "ping", timestamp: new Date().toISOString() }));

if (api.session) startSession();
