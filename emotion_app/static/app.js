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
    state: $("state"), closeInfo: $("close-info"), devices: $("devices"),
    retry: $("retry"), retryInfo: $("retry-info"), reconnectNow: $("reconnect-now"),
    connect: $("connect"), disconnect: $("disconnect"), ping: $("ping"),
    current: $("current-emotion"), currentTime: $("current-time"),
    log: $("log"), clearLog: $("clear-log"),
    emotionButtons: Array.from(document.querySelectorAll("[data-emotion]")),
  };

  const RETRY_BASE_MS = 500; // reconnect delays: random in [0, min(cap, base * 2^(attempt-1))]
  const RETRY_CAP_MS = 30000;
  const STABLE_MS = 10000; // a socket up this long starts the backoff over
  const PENDING_TTL_MS = 120000; // an unconfirmed update older than this is not sent again
  const HANDSHAKE_TIMEOUT_MS = 15000; // a socket not open by then counts as failed

  let session = loadSession(); // {access, refresh, user}
  let socket = null;
  let refreshing = null;
  let expiryRetried = false; // one refresh-and-reconnect per expiry, reset once a socket opens
  let wanted = false; // the user wants a socket: unexpected closes reconnect
  let attemptId = 0; // bumped by every connect/disconnect, so a stale async step can tell
  let attempts = 0; // reconnect attempts since the last socket that stayed up
  let retry = null; // {timer, ticker} while waiting to reconnect
  let openedAt = 0; // when the current socket opened (0: it never did)
  let resumable = false; // a socket of this session got its state: reconnects pass ?since=
  let lastEventId = 0; // the newest event id received on a socket, resumed from with ?since=
  let established = null; // the current socket's connection_established frame
  let syncRequested = false; // a {"type":"sync"} is waiting for its "synced"
  let shownId = 0; // id of the event on display; older ones arriving late are not shown
  let pending = null; // {frame, at}: the last emotion set, until the server confirms it

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
    resumable = false; // the first connect after login starts fresh
    lastEventId = shownId = attempts = 0;
    pending = null;
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
    pending = null;
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
    if (!session || socket || el.state.dataset.state === "connecting") return;
    const attempt = ++attemptId;
    const stale = () => attempt !== attemptId || !session;
    clearRetry();
    wanted = true;
    setState("connecting");
    const ticket = (!isExpired(session.access) || await refreshAccess()) && await fetchTicket();
    if (stale()) return; // logged out or cancelled meanwhile (a refused token ends the session)
    if (!ticket) { scheduleReconnect(); return; } // the server is unreachable for now
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const since = resumable ? `&since=${lastEventId}` : "";
    // A single-use ticket, not the access token: URLs end up in proxy logs and browser history.
    const ws = new WebSocket(`${scheme}//${location.host}/api/ws?ticket=${encodeURIComponent(ticket)}${since}`);
    socket = ws;
    openedAt = 0;
    established = null;
    syncRequested = false;
    log("info", resumable ? `Connecting to /api/ws, resuming after event ${lastEventId}` : "Connecting to /api/ws");
    ws.addEventListener("open", () => {
      if (socket !== ws) return;
      openedAt = Date.now();
      setState("connected");
    });
    ws.addEventListener("message", (event) => { if (socket === ws) onFrame(event.data); });
    ws.addEventListener("close", (event) => onClose(ws, event));
    setTimeout(() => {
      if (socket !== ws || openedAt) return;
      ws.close();
      onClose(ws, { code: 1006, reason: "connection timed out" }); // the socket's own close event comes late, if at all
    }, HANDSHAKE_TIMEOUT_MS);
  }

  // A ticket for one socket. Asking for it over HTTP also checks that the server is up and still takes
  // the token (a refused handshake would only show as 1006). Null means try later; a token the server
  // refuses ends the session (report).
  async function fetchTicket() {
    try {
      return (await api("/api/ws-ticket", { method: "POST" })).ticket;
    } catch (err) {
      if (err.status === 401) report(err);
      return null;
    }
  }

  function disconnect(reason = "Disconnected by user") {
    wanted = false;
    attemptId++;
    clearRetry();
    const ws = socket;
    socket = null;
    if (ws) ws.close(1000, reason);
    if (el.state.dataset.state !== "disconnected") setState("disconnected", 1000, reason);
  }

  function onClose(ws, event) {
    const reason = event.reason || closeMeaning(event.code);
    log("info", `Socket closed: ${event.code}${reason ? " " + reason : ""}`);
    if (socket !== ws) return; // closed on purpose, state already shown
    socket = null;
    if (openedAt && Date.now() - openedAt >= STABLE_MS) attempts = 0;
    setState("disconnected", event.code, reason);
    if (!wanted || !session) return;
    if (event.code === 4403) {
      wanted = false;
      notify("This token was revoked (logged out): log in again.", true);
    } else if (event.code === 4401 && !expiryRetried) {
      expiryRetried = true;
      const attempt = attemptId;
      refreshAccess().then((ok) => {
        if (attempt !== attemptId || !wanted || !session) return;
        if (ok) connect();
        else scheduleReconnect();
      });
    } else {
      scheduleReconnect();
    }
  }

  // Wait a random time up to a cap that doubles with each attempt ("full jitter"), then connect.
  function scheduleReconnect() {
    clearRetry();
    attempts += 1;
    const delay = Math.random() * Math.min(RETRY_CAP_MS, RETRY_BASE_MS * 2 ** (attempts - 1));
    const due = Date.now() + delay;
    const attempt = attempts;
    const tick = () => {
      const seconds = Math.max(1, Math.ceil((due - Date.now()) / 1000));
      el.retryInfo.textContent = `Reconnecting in ${seconds} s (attempt ${attempt})…`;
    };
    setState("reconnecting");
    tick();
    retry = { timer: setTimeout(connect, delay), ticker: setInterval(tick, 250) };
    log("info", `Reconnecting in ${(delay / 1000).toFixed(1)} s (attempt ${attempt})`);
  }

  function clearRetry() {
    if (retry) { clearTimeout(retry.timer); clearInterval(retry.ticker); }
    retry = null;
  }

  function closeMeaning(code) {
    return {
      1000: "normal closure", 1001: "going away", 1006: "connection lost or refused (server down or token rejected)",
      1008: "ping timeout", 1009: "frame too big", 1011: "server error", 1012: "service restart",
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
      onEstablished(frame);
    } else if (frame.type === "emotion_update") {
      onEmotionFrame(frame);
    } else if (frame.type === "synced") {
      onSynced(frame);
    } else if (frame.type === "presence") {
      showDevices(frame.devices);
      log("info", `Another device ${frame.change} (${frame.devices} connected now)`);
    } else if (frame.type === "pong" && frame.client_timestamp) {
      const rtt = Date.now() - Date.parse(frame.client_timestamp);
      if (rtt >= 0) log("info", `Round trip ${rtt} ms`);
    } else if (frame.type === "error") {
      onErrorFrame(frame);
    }
  }

  function onEstablished(frame) {
    established = frame;
    expiryRetried = false;
    notify(""); // an earlier problem (say, the expiry that led here) is over
    showDevices(frame.devices);
    shownId = 0; // the state on connect is authoritative; replayed events are older, live ones newer
    showEmotion(frame.current || { emotion: null });
    if (!resumable) lastEventId = frame.last_event_id || 0; // fresh: this state is the starting point
    resumable = true;
    if (pending && Date.now() - pending.at < PENDING_TTL_MS) {
      log("info", `Sending the unconfirmed update again (client_msg_id ${pending.frame.client_msg_id})`);
      send(pending.frame);
    }
  }

  function onEmotionFrame(frame) {
    if (pending && frame.client_msg_id === pending.frame.client_msg_id) pending = null; // confirmed
    if (frame.duplicate) {
      logDuplicate(frame); // the original event, answering this device only: lastEventId stays
    } else if (typeof frame.id === "number" && frame.id > lastEventId) {
      lastEventId = frame.id;
    }
    showEmotion(frame);
  }

  function onSynced(frame) {
    syncRequested = false;
    const after = frame.since == null ? "a gap" : `event ${frame.since}`;
    log("info", `Caught up: ${frame.count} missed event(s) after ${after}` +
      (frame.has_more ? `, more after event ${frame.last_id}` : ""));
    if (typeof frame.last_id === "number" && frame.last_id > lastEventId) lastEventId = frame.last_id;
    if (frame.has_more) {
      syncRequested = send({ type: "sync", since: frame.last_id }); // live events wait for the last page
    }
  }

  function onErrorFrame(frame) {
    if (frame.code !== "since_too_old") {
      notify(`Server: ${frame.message}`, true);
    } else if (syncRequested) {
      // Paging on failed, and the socket holds live events until the last page: open a fresh one
      // (no ?since=), whose connection_established is the reload.
      log("info", "Missed events are no longer kept: reloading the state");
      resumable = false;
      disconnect("Reloading state");
      connect();
    } else {
      // On connect: the current state in connection_established is the reload; go on live from there.
      log("info", "Missed events are no longer kept: continuing from the current state");
      lastEventId = (established && established.last_event_id) || 0;
    }
  }

  function setState(state, code, reason) {
    el.state.dataset.state = state;
    el.state.textContent = state.charAt(0).toUpperCase() + state.slice(1) + (state === "reconnecting" ? "…" : "");
    if (state === "disconnected" && code !== undefined) {
      el.closeInfo.textContent = `Closed with code ${code}${reason ? ": " + reason : ""}`;
    } else if (state === "connected") {
      el.closeInfo.textContent = "";
    }
    el.retry.hidden = state !== "reconnecting";
    el.connect.disabled = state !== "disconnected";
    el.disconnect.disabled = state === "disconnected";
    el.ping.disabled = state !== "connected";
    if (state !== "connected") showDevices(null);
  }

  function showDevices(count) {
    el.devices.textContent = typeof count === "number" ? String(count) : "–";
  }

  // ---- emotions -------------------------------------------------------------------

  function showEmotion(event) {
    if (event.id != null) {
      if (event.id < shownId) return; // an older event arriving late (or replayed)
      shownId = event.id;
    }
    el.current.textContent = event.emotion || "none yet";
    el.current.dataset.emotion = event.emotion || "";
    el.currentTime.textContent = event.timestamp ? `since ${new Date(event.timestamp).toLocaleString()}` : "";
    el.emotionButtons.forEach((button) => {
      button.setAttribute("aria-pressed", String(button.dataset.emotion === event.emotion));
    });
  }

  // A fresh id per update the user makes: sending it again (after a lost connection) stores it once.
  function newMessageId() {
    if (typeof crypto.randomUUID === "function") return crypto.randomUUID(); // secure contexts only
    return Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");
  }

  function logDuplicate(event) {
    log("info", `Duplicate (client_msg_id ${event.client_msg_id}): already stored as event ${event.id}, nothing new stored`);
  }

  async function setEmotion(emotion) {
    const body = { emotion, timestamp: new Date().toISOString(), client_msg_id: newMessageId() };
    const frame = { type: "emotion_update", ...body };
    pending = { frame, at: Date.now() };
    if (send(frame)) return; // confirmed by the echoed frame
    try {
      const event = await api("/api/emotions", { method: "POST", body });
      if (pending && pending.frame === frame) pending = null;
      if (event.duplicate) logDuplicate(event);
      showEmotion(event);
    } catch (err) {
      if (err.status === 0 || err.status >= 500) {
        notify(`${err.message} The update will be sent again on the next connection.`, true);
        return; // stays pending: its client_msg_id keeps a repeat from being stored twice
      }
      if (pending && pending.frame === frame) pending = null;
      report(err);
    }
  }

  // ---- wiring ---------------------------------------------------------------------

  el.form.addEventListener("submit", onAuthSubmit);
  el.logout.addEventListener("click", logout);
  el.connect.addEventListener("click", () => { expiryRetried = false; attempts = 0; connect(); });
  el.reconnectNow.addEventListener("click", connect);
  el.disconnect.addEventListener("click", () => disconnect());
  window.addEventListener("online", () => { if (retry) connect(); }); // back online: no need to wait
  el.ping.addEventListener("click", () => send({ type: "ping", timestamp: new Date().toISOString() }));
  el.clearLog.addEventListener("click", () => el.log.replaceChildren());
  el.emotionButtons.forEach((button) => {
    button.addEventListener("click", () => setEmotion(button.dataset.emotion));
  });

  setState("disconnected");
  if (session && session.access) startSession();
})();
