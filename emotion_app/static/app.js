// Test page for the emotion sync API: log in, open the socket, watch frames, set an emotion.
"use strict";

(() => {
  const LOG_LIMIT = 200;
  const STORE_KEY = "emotion-sync-session";
  const $ = (id) => document.getElementById(id);
  const el = {
    notice: $("notice"), auth: $("auth"), form: $("auth-form"), authError: $("auth-error"),
    username: $("auth-username"), password: $("auth-password"),
    whoami: $("whoami"), who: $("username"), logout: $("logout"), session: $("session"),
    state: $("state"), closeInfo: $("close-info"),
    connect: $("connect"), disconnect: $("disconnect"), ping: $("ping"),
    current: $("current-emotion"), currentTime: $("current-time"),
    log: $("log"), clearLog: $("clear-log"),
    emotionButtons: Array.from(document.querySelectorAll("[data-emotion]")),
  };

  let session = loadSession(); // {access, refresh, user}
  let socket = null;
  let refreshing = null;
  let expiryRetried = false; // one refresh-and-reconnect per expiry, reset once a socket opens
  let lastEventId = 0;

  // ---- storage ------------------------------------------------------------

  function loadSession() {
    try { return JSON.parse(sessionStorage.getItem(STORE_KEY)) || null; } catch { return null; }
  }

  function saveSession() {
    if (session) sessionStorage.setItem(STORE_KEY, JSON.stringify(session));
    else sessionStorage.removeItem(STORE_KEY);
  }

  // ---- log and messages -------------------------------------------------------

  function log(kind, text) {
    const item = document.createElement("li");
    item.className = "log-" + kind;
    const time = document.createElement("time");
    time.textContent = new Date().toLocaleTimeString();
    const tag = document.createElement("span");
    tag.className = "tag";
    tag.textContent = { in: "⬇ in", out: "⬆ out", http: "↔ http", info: "• info", error: "✖ error" }[kind];
    const body = document.createElement("code");
    body.textContent = text;
    item.append(time, tag, body);
    el.log.prepend(item);
    while (el.log.children.length > LOG_LIMIT) el.log.lastElementChild.remove();
  }

  function notify(text, isError = false) {
    el.notice.textContent = text;
    el.notice.classList.toggle("is-error", isError);
  }

  // ---- HTTP ---------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, code, message) { super(message); this.status = status; this.code = code; }
  }

  // JSON request; uses the access token unless `token` is given, and on an expired access token
  // refreshes once and retries.
  async function api(path, { method = "GET", body, token, retry = true } = {}) {
    const headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const bearer = token !== undefined ? token : session && session.access;
    if (bearer) headers.Authorization = "Bearer " + bearer;
    let res;
    try {
      res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    } catch (err) {
      log("error", `${method} ${path}: network error`);
      throw new ApiError(0, "network_error", "Network error: is the server running?");
    }
    const data = await res.json().catch(() => null);
    log(res.ok ? "http" : "error", `${method} ${path} → ${res.status}` + (data ? " " + redact(data) : ""));
    if (res.ok) return data;
    const err = new ApiError(res.status, (data && data.error) || "http_error",
      (data && data.message) || `Request failed with HTTP ${res.status}`);
    if (retry && token === undefined && err.code === "token_expired" && await refreshAccess()) {
      return api(path, { method, body, retry: false });
    }
    throw err;
  }

  // Tokens are shortened in the log: enough to tell them apart, not enough to use them.
  function redact(data) {
    return JSON.stringify(data, (key, value) =>
      /_token$/.test(key) && typeof value === "string" ? value.slice(0, 12) + "…" : value);
  }

  // Report a failed request; a token the server no longer accepts ends the session.
  function report(err) {
    if (!session) return; // already ended (refresh refused)
    if (err.status === 401 && err.code !== "token_expired") endSession(`Session ended: ${err.message}`);
    else notify(err.message, true);
  }

  // Swap the refresh token for a new access token; concurrent callers share one request.
  function refreshAccess() {
    if (!session || !session.refresh) return Promise.resolve(false);
    if (!refreshing) {
      refreshing = api("/api/auth/refresh", { method: "POST", token: session.refresh, retry: false })
        .then((data) => {
          session.access = data.access_token;
          saveSession();
          log("info", "Access token refreshed");
          return true;
        })
        .catch((err) => {
          if (err.status === 401) endSession(`Session ended: ${err.message}`);
          else notify(err.message, true);
          return false;
        })
        .finally(() => { refreshing = null; });
    }
    return refreshing;
  }

  // ---- session ------------------------------------------------------------------

  async function onAuthSubmit(event) {
    event.preventDefault();
    const action = event.submitter && event.submitter.value === "register" ? "register" : "login";
    const credentials = { username: el.username.value.trim(), password: el.password.value };
    el.authError.textContent = "";
    setFormBusy(true);
    try {
      if (action === "register") {
        await api("/api/auth/register", { method: "POST", body: credentials, token: null });
        log("info", `Registered ${credentials.username}`);
      }
      const data = await api("/api/auth/login", { method: "POST", body: credentials, token: null });
      session = { access: data.access_token, refresh: data.refresh_token, user: data.user };
      saveSession();
      el.password.value = "";
      startSession();
    } catch (err) {
      el.authError.textContent = err.message;
    } finally {
      setFormBusy(false);
    }
  }

  function setFormBusy(busy) {
    el.form.querySelectorAll("button, input").forEach((node) => { node.disabled = busy; });
  }

  function startSession() {
    el.who.textContent = session.user ? session.user.username : "?";
    el.auth.hidden = true;
    el.whoami.hidden = false;
    el.session.hidden = false;
    notify("");
    lastEventId = 0;
    showEmotion({ emotion: null });
    loadCurrent();
    connect();
  }

  async function loadCurrent() {
    try { showEmotion(await api("/api/emotions/current")); } catch (err) { report(err); }
  }

  async function logout() {
    const { access, refresh } = session || {};
    disconnect();
    // Revoke both tokens, so neither can be used again.
    await Promise.allSettled([
      access && api("/api/auth/logout", { method: "POST", token: access, retry: false }),
      refresh && api("/api/auth/logout", { method: "POST", token: refresh, retry: false }),
    ]);
    endSession("Logged out");
  }

  function endSession(message) {
    disconnect();
    session = null;
    saveSession();
    el.auth.hidden = false;
    el.whoami.hidden = true;
    el.session.hidden = true;
    el.authError.textContent = "";
    notify(message);
    el.username.focus();
  }

  // ---- WebSocket ------------------------------------------------------------------

  async function connect() {
    if (!session || el.state.dataset.state !== "disconnected") return;
    setState("connecting");
    if (isExpired(session.access) && !(await refreshAccess())) {
      if (el.state.dataset.state === "connecting") setState("disconnected");
      return;
    }
    if (!session || el.state.dataset.state !== "connecting") return; // logged out or cancelled meanwhile
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(`${scheme}//${location.host}/api/ws?token=${encodeURIComponent(session.access)}`);
    socket = ws;
    log("info", "Connecting to /api/ws");
    ws.addEventListener("open", () => { setState("connected"); });
    ws.addEventListener("message", (event) => onFrame(event.data));
    ws.addEventListener("close", (event) => onClose(ws, event));
  }

  function disconnect() {
    const ws = socket;
    socket = null;
    if (ws) ws.close(1000, "Disconnected by user");
    if (el.state.dataset.state !== "disconnected") setState("disconnected", 1000, "Disconnected by user");
  }

  function onClose(ws, event) {
    const reason = event.reason || closeMeaning(event.code);
    log("info", `Socket closed: ${event.code}${reason ? " " + reason : ""}`);
    if (socket !== ws) return; // closed on purpose, state already shown
    socket = null;
    setState("disconnected", event.code, reason);
    if (event.code === 4401 && !expiryRetried) {
      expiryRetried = true;
      refreshAccess().then((ok) => { if (ok) connect(); });
    } else if (event.code === 4403) {
      notify("This token was revoked (logged out): log in again.", true);
    }
  }

  function closeMeaning(code) {
    return {
      1000: "normal closure", 1001: "going away", 1006: "connection lost or refused (server down or token rejected)",
      1008: "ping timeout", 1009: "frame too big", 1011: "server error",
      4401: "token expired", 4403: "token revoked",
    }[code] || "";
  }

  function isExpired(token) {
    try {
      const payload = JSON.parse(atob(token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/")));
      return payload.exp * 1000 <= Date.now() + 5000; // a little early, for clock skew
    } catch { return false; }
  }

  function send(frame) {
    if (!socket || socket.readyState !== WebSocket.OPEN) return false;
    const text = JSON.stringify(frame);
    socket.send(text);
    log("out", text);
    return true;
  }

  function onFrame(text) {
    log("in", text);
    let frame;
    try { frame = JSON.parse(text); } catch { return; }
    if (frame.type === "connection_established") {
      expiryRetried = false;
      notify(""); // an earlier problem (say, the expiry that led here) is over
    } else if (frame.type === "emotion_update") {
      showEmotion(frame);
    } else if (frame.type === "pong" && frame.client_timestamp) {
      const rtt = Date.now() - Date.parse(frame.client_timestamp);
      if (rtt >= 0) log("info", `Round trip ${rtt} ms`);
    } else if (frame.type === "error") {
      notify(`Server: ${frame.message}`, true);
    }
  }

  function setState(state, code, reason) {
    el.state.dataset.state = state;
    el.state.textContent = state.charAt(0).toUpperCase() + state.slice(1);
    if (state === "disconnected" && code !== undefined) {
      el.closeInfo.textContent = `Closed with code ${code}${reason ? ": " + reason : ""}`;
    } else if (state !== "disconnected") {
      el.closeInfo.textContent = "";
    }
    el.connect.disabled = state !== "disconnected";
    el.disconnect.disabled = state === "disconnected";
    el.ping.disabled = state !== "connected";
  }

  // ---- emotions -------------------------------------------------------------------

  function showEmotion(event) {
    if (event.id != null) {
      if (event.id < lastEventId) return; // an older event arriving late
      lastEventId = event.id;
    }
    el.current.textContent = event.emotion || "none yet";
    el.current.dataset.emotion = event.emotion || "";
    el.currentTime.textContent = event.timestamp ? `since ${new Date(event.timestamp).toLocaleString()}` : "";
    el.emotionButtons.forEach((button) => {
      button.setAttribute("aria-pressed", String(button.dataset.emotion === event.emotion));
    });
  }

  async function setEmotion(emotion) {
    const timestamp = new Date().toISOString();
    if (send({ type: "emotion_update", emotion, timestamp })) return; // confirmed by the echoed frame
    try {
      showEmotion(await api("/api/emotions", { method: "POST", body: { emotion, timestamp } }));
    } catch (err) {
      report(err);
    }
  }

  // ---- wiring ---------------------------------------------------------------------

  el.form.addEventListener("submit", onAuthSubmit);
  el.logout.addEventListener("click", logout);
  el.connect.addEventListener("click", () => { expiryRetried = false; connect(); });
  el.disconnect.addEventListener("click", disconnect);
  el.ping.addEventListener("click", () => send({ type: "ping", timestamp: new Date().toISOString() }));
  el.clearLog.addEventListener("click", () => el.log.replaceChildren());
  el.emotionButtons.forEach((button) => {
    button.addEventListener("click", () => setEmotion(button.dataset.emotion));
  });

  setState("disconnected");
  if (session && session.access) startSession();
})();
