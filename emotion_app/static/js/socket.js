// EmotionSocket: the browser's client for the emotion socket (/api/ws). It depends on nothing but
// the browser: no page, no framework.
//
//   import { EmotionSocket } from "/static/js/socket.js";
//   const socket = new EmotionSocket({ ticket: () => fetchTicket(), device: "Laptop" });
//   socket.addEventListener("update", (e) => show(e.detail));      // each stored event once, in order
//   socket.addEventListener("state", (e) => status(e.detail.state)); // connecting, catching_up, online, offline, stopped
//   socket.start();
//   socket.set("happy");                                            // sent now, or as soon as it is back
//
// What it does for the caller:
// - Reconnects by itself: at once after a server restart (1012) or an expired token (4401, with a
//   fresh ticket), otherwise after a random delay up to a ceiling that doubles with each failed attempt
//   ("full jitter"), so that thousands of devices do not come back in lockstep. The ceiling is capped at
//   `backoffCap`, or at `restartBackoffCap` while `restartWindow` ms have not passed since a 1012 and
//   no connection was established since: a restarted server is back within seconds.
// - Resumes: every reconnect passes `since` = the last event id seen, follows `has_more` pages until
//   caught up, and skips any event it has seen already, so "update" fires once per event, in id order.
// - Never loses or doubles an update: `set` gives each one a `client_msg_id` and keeps it in an
//   outbox until the server confirms it, sending it again after every reconnect (a repeat of an id
//   is stored once by the server).
// - Stays connected for days: when the server says the token is about to expire (`token_expiring`),
//   it asks `refreshToken()` for a new access token and hands it over in-band (`refresh`); without
//   that option, or if it fails, the server closes with 4401 and a fresh ticket reconnects.
// - Notices a dead connection: an application ping every `heartbeat` ms, and a pong expected within
//   `heartbeatTimeout` ms.
// - Stops for good only when the server revokes the session (4403) or refuses its credentials.
//
// Events (CustomEvent, data in `detail`): "state" {state, attempt?, retryIn?, code?, reason?};
// "established" (the connection_established frame); "update" (an event); "refreshed" (the frame); "ack" {client_msg_id,
// event, duplicate}; "presence" (the frame); "synced" (the frame); "reset" (events were pruned
// before `since`: the established frame's `current` is the state to show); "server-error" (an error
// frame); "frame" {direction: "in" | "out", text} (every frame, for logging).

const CLOSE_RESTART = 1012;
const CLOSE_EXPIRED = 4401;
const CLOSE_REVOKED = 4403;

export class EmotionSocket extends EventTarget {
  /**
   * @param {object} options
   * @param {() => Promise<string>} [options.ticket] returns a single-use ticket (POST /api/ws-ticket);
   *   a rejection with `status` 401 or 403 stops the socket, any other retries later (not before its
   *   `retryAfter` seconds, if it has them).
   * @param {() => Promise<string>} [options.token] returns an access token (instead of tickets).
   * @param {() => Promise<string>} [options.refreshToken] returns a newer access token, handed to the
   *   server before the socket's one expires.
   * @param {string} [options.url] the socket's URL or path ("/api/ws").
   * @param {string} [options.device] this device's name, shown to the user's other devices.
   * @param {number} [options.since] resume after this event id from the first connect on.
   * @param {number} [options.backoffBase] ms: the longest wait after the first failed attempt (doubled
   *   after each further one).
   * @param {number} [options.backoffCap] ms: the longest wait between attempts.
   * @param {number} [options.restartBackoffCap] ms: the longest wait between attempts within
   *   `restartWindow` ms of a close with 1012 (server restart), until a connection is established.
   * @param {number} [options.restartWindow] ms after a 1012 during which `restartBackoffCap` applies;
   *   the failed attempts counted meanwhile still count after it.
   * @param {number} [options.stableAfter] ms: a connection open this long starts the schedule over.
   */
  constructor({
    ticket, token, refreshToken, url = "/api/ws", device = "", since = null,
    backoffBase = 500, backoffCap = 30000, restartBackoffCap = 2000, restartWindow = 30000,
    stableAfter = 10000, handshakeTimeout = 15000,
    heartbeat = 30000, heartbeatTimeout = 10000, WebSocketImpl = globalThis.WebSocket,
  } = {}) {
    super();
    if (!ticket && !token) throw new TypeError("EmotionSocket needs a ticket or a token function");
    Object.assign(this, { _ticket: ticket, _token: token, _refreshToken: refreshToken, _url: url, device });
    this._opts = {
      backoffBase, backoffCap, restartBackoffCap, restartWindow, stableAfter,
      handshakeTimeout, heartbeat, heartbeatTimeout,
    };
    this._WebSocket = WebSocketImpl;
    this.lastEventId = since; // null until the first connection_established
    this.state = "stopped";
    this.outbox = new Map(); // client_msg_id -> frame, until confirmed
    this._ws = null;
    this._wanted = false;
    this._attempts = 0;
    this._restartedAt = 0; // Date.now() of the last 1012, until a connection is established
    this._timers = new Set();
    this._generation = 0;
    this._onOnline = () => { if (this.state === "offline") this._connect(); };
  }

  /** Connect, and keep connected until `stop()`. */
  start() {
    if (this._wanted) return;
    this._wanted = true;
    this._attempts = 0;
    this._restartedAt = 0;
    globalThis.addEventListener?.("online", this._onOnline);
    this._connect();
  }

  /** Close the socket and stop reconnecting (unconfirmed updates stay in the outbox). */
  stop(reason = "stopped") {
    this._wanted = false;
    globalThis.removeEventListener?.("online", this._onOnline);
    this._teardown(1000, reason);
    this._setState("stopped", { reason });
  }

  /** Reconnect now (say, after the device name changed), keeping the position in the stream. */
  restart() {
    this._teardown(1000, "reconnecting");
    if (this._wanted) this._connect();
  }

  /** Set the user's emotion: sent now if connected, else as soon as the socket is back. Returns the
   * frame (its `client_msg_id` identifies the "ack" that confirms it). */
  set(emotion, { clientMsgId = newId(), timestamp = new Date().toISOString() } = {}) {
    const frame = { type: "emotion_update", emotion, timestamp, client_msg_id: clientMsgId };
    this.outbox.set(clientMsgId, frame);
    if (this.state === "online" || this.state === "catching_up") this._send(frame);
    return frame;
  }

  /** Send a raw frame if connected; returns whether it was sent. */
  send(frame) {
    return this._send(frame);
  }

  // ---- connecting -------------------------------------------------------------------------------

  async _connect() {
    const generation = ++this._generation;
    this._clearTimers();
    this._setState("connecting", { attempt: this._attempts + 1 });
    let query;
    try {
      query = this._ticket
        ? `ticket=${encodeURIComponent(await this._ticket())}`
        : `token=${encodeURIComponent(await this._token())}`;
    } catch (err) {
      if (generation !== this._generation || !this._wanted) return;
      if (err && (err.status === 401 || err.status === 403)) {
        this._wanted = false;
        this._setState("stopped", { reason: "unauthorized", message: err.message });
      } else {
        this._retryLater(err && err.retryAfter);
      }
      return;
    }
    if (generation !== this._generation || !this._wanted) return;
    if (this.lastEventId != null) query += `&since=${this.lastEventId}`;
    if (this.device) query += `&device=${encodeURIComponent(this.device)}`;
    const ws = new this._WebSocket(`${absolute(this._url)}?${query}`);
    this._ws = ws;
    this._openedAt = 0;
    this._resuming = this.lastEventId != null;
    ws.addEventListener("open", () => { if (this._ws === ws) this._openedAt = Date.now(); });
    ws.addEventListener("message", (event) => { if (this._ws === ws) this._onFrame(event.data); });
    ws.addEventListener("close", (event) => this._onClose(ws, event.code, event.reason));
    this._later(() => {
      // No connection_established in time: give up on this socket (its own close event may come late).
      if (this._ws === ws && this.state === "connecting") this._onClose(ws, 1006, "handshake timed out");
    }, this._opts.handshakeTimeout);
  }

  _onClose(ws, code, reason) {
    if (this._ws !== ws) return;
    this._teardown();
    if (this._openedAt && Date.now() - this._openedAt >= this._opts.stableAfter) this._attempts = 0;
    if (!this._wanted) return;
    if (code === CLOSE_REVOKED) {
      this._wanted = false;
      this._setState("stopped", { reason: "revoked", code, message: reason });
    } else if (code === CLOSE_RESTART) {
      // Another server takes over at once. If none does yet, the restarted one is back within seconds:
      // the attempts meanwhile keep short delays (not counting this one, as in the Python client).
      this._restartedAt = Date.now();
      this._setState("offline", { code, reason, retryIn: 0 });
      this._connect();
    } else if (code === CLOSE_EXPIRED && this._attempts === 0) {
      // An expired token is replaced by the next ticket, at once; counted, so a second 4401 waits.
      this._attempts += 1;
      this._setState("offline", { code, reason, retryIn: 0 });
      this._connect();
    } else {
      this._retryLater(null, code, reason);
    }
  }

  _retryLater(retryAfter, code, reason) {
    this._attempts += 1;
    const { backoffBase, backoffCap, restartBackoffCap, restartWindow } = this._opts;
    const restarting = this._restartedAt && Date.now() - this._restartedAt < restartWindow;
    const cap = restarting ? Math.min(backoffCap, restartBackoffCap) : backoffCap;
    const ceiling = Math.min(cap, backoffBase * 2 ** (this._attempts - 1));
    const delay = Math.max(Math.random() * ceiling, (retryAfter || 0) * 1000);
    this._setState("offline", { code, reason, attempt: this._attempts, retryIn: delay, retryAt: Date.now() + delay });
    this._later(() => this._connect(), delay);
  }

  _teardown(code, reason) {
    const ws = this._ws;
    this._ws = null;
    this._generation++;
    this._clearTimers();
    if (ws && ws.readyState <= 1) {
      try { ws.close(code || 1000, reason); } catch { /* closing an unopened socket */ }
    }
  }

  // ---- frames -------------------------------------------------------------------------------------

  _send(frame) {
    const ws = this._ws;
    if (!ws || ws.readyState !== 1) return false;
    const text = JSON.stringify(frame);
    ws.send(text);
    this._emit("frame", { direction: "out", text });
    return true;
  }

  _onFrame(text) {
    this._emit("frame", { direction: "in", text });
    let frame;
    try { frame = JSON.parse(text); } catch { return; }
    this._lastFrameAt = Date.now();
    switch (frame.type) {
      case "connection_established": return this._onEstablished(frame);
      case "emotion_update": return this._onUpdate(frame);
      case "synced": return this._onSynced(frame);
      case "presence": return this._emit("presence", frame);
      case "token_expiring": return this._renew();
      case "refreshed": return this._emit("refreshed", frame);
      case "pong": return undefined;
      case "error": return this._onError(frame);
      default: return undefined;
    }
  }

  _onEstablished(frame) {
    this.established = frame;
    this._restartedAt = 0; // the restart is over: a later failure backs off as usual
    this._syncing = false;
    if (this.lastEventId == null) {
      this.lastEventId = frame.last_event_id || 0;
      if (this._everEstablished) this._emit("reset", frame); // a fresh start after a reset: reload
    }
    this._everEstablished = true;
    this._emit("established", frame);
    this._setState(this._resuming ? "catching_up" : "online");
    this._heartbeat();
    for (const pending of this.outbox.values()) this._send(pending);
  }

  _onUpdate(frame) {
    const { type, duplicate, ...event } = frame;
    const pending = event.client_msg_id && this.outbox.get(event.client_msg_id);
    if (pending) {
      this.outbox.delete(event.client_msg_id);
      this._emit("ack", { client_msg_id: event.client_msg_id, event, duplicate: Boolean(duplicate) });
    }
    if (duplicate || typeof event.id !== "number" || event.id <= this.lastEventId) return; // seen already
    this.lastEventId = event.id;
    this._emit("update", event);
  }

  _onSynced(frame) {
    if (typeof frame.last_id === "number" && frame.last_id > this.lastEventId) this.lastEventId = frame.last_id;
    this._emit("synced", frame);
    // Live events wait in SQL until the last page has been asked for.
    this._syncing = Boolean(frame.has_more) && this._send({ type: "sync", since: this.lastEventId });
    if (!frame.has_more && this.state === "catching_up") this._setState("online");
  }

  _onError(frame) {
    if (frame.code === "since_too_old") {
      // Events after our position were pruned: the state to show is the current one.
      if (this._syncing) {
        // Paging on failed, and this socket holds live events back until the last page: open a
        // fresh one, whose connection_established carries the current state.
        this._syncing = false;
        this.lastEventId = null;
        this.restart();
      } else {
        this.lastEventId = (this.established && this.established.last_event_id) || 0;
        if (this.state === "catching_up") this._setState("online");
        this._emit("reset", this.established);
      }
      return;
    }
    if (frame.code === "rate_limited" && this.outbox.size) {
      // A refused update is still in the outbox: offer it again when the server says.
      this._later(() => { for (const pending of this.outbox.values()) this._send(pending); },
        (frame.retry_after || 1) * 1000);
    }
    this._emit("server-error", frame);
  }

  async _renew() {
    if (!this._refreshToken) return; // the server closes with 4401 at expiry; a fresh ticket follows
    const ws = this._ws;
    let token;
    try { token = await this._refreshToken(); } catch { return; }
    if (this._ws === ws && token) this._send({ type: "refresh", token });
  }

  _heartbeat() {
    const { heartbeat, heartbeatTimeout } = this._opts;
    if (!heartbeat) return;
    const ws = this._ws;
    this._later(() => {
      if (this._ws !== ws) return;
      const sentAt = Date.now();
      this._send({ type: "ping", timestamp: new Date(sentAt).toISOString() });
      this._later(() => {
        // Nothing at all since the ping: the connection is dead even if the browser has not noticed.
        if (this._ws === ws && !(this._lastFrameAt >= sentAt)) this._onClose(ws, 1006, "no answer to ping");
      }, heartbeatTimeout);
      this._heartbeat();
    }, heartbeat);
  }

  // ---- helpers -------------------------------------------------------------------------------------

  _setState(state, detail = {}) {
    this.state = state;
    this._emit("state", { state, ...detail });
  }

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  _later(fn, ms) {
    const timer = setTimeout(() => { this._timers.delete(timer); fn(); }, ms);
    this._timers.add(timer);
  }

  _clearTimers() {
    for (const timer of this._timers) clearTimeout(timer);
    this._timers.clear();
  }
}

/** A fresh id for an update (a repeat of it is stored once). */
export function newId() {
  if (typeof crypto.randomUUID === "function") return crypto.randomUUID(); // secure contexts only
  return Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");
}

function absolute(url) {
  if (/^wss?:/.test(url)) return url;
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}${url}`;
}
