// The HTTP API client: JSON requests with the access token, one refresh on expiry, the session's
// tokens kept in this tab's sessionStorage.

const STORE_KEY = "emotion-sync-session";

/** An answer of the API that is not a success; `status` 0 means the server could not be reached. */
export class ApiError extends Error {
  constructor(status, code, message, body = null) {
    super(message);
    this.status = status;
    this.code = code;
    this.body = body;
    this.retryAfter = body && typeof body.retry_after === "number" ? body.retry_after : null; // seconds
  }
}

/** The session and every request of the page. */
export class Api {
  /** `onLog(kind, text)` sees every request (the developer panel); `onSessionEnd(message)` is told when the
   * server refuses the session's tokens for good. */
  constructor({ onLog = () => {}, onSessionEnd = () => {} } = {}) {
    this.onLog = onLog;
    this.onSessionEnd = onSessionEnd;
    this.session = load(); // {access, refresh, user} or null
    this._refreshing = null;
  }

  get user() {
    return this.session && this.session.user;
  }

  /** One request with a JSON `body` (or a FormData `form`, sent as multipart); uses the access token
   * unless `token` is given; on an expired access token, refreshes once and tries again. Resolves to the
   * parsed body (or the Response when `raw`). */
  async request(path, { method = "GET", body, form, token, retry = true, raw = false } = {}) {
    const headers = { Accept: raw ? "*/*" : "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const bearer = token !== undefined ? token : this.session && this.session.access;
    if (bearer) headers.Authorization = "Bearer " + bearer;
    let res;
    try {
      // A FormData body sets its own multipart Content-Type, boundary included.
      res = await fetch(path, { method, headers, body: form !== undefined ? form : body === undefined ? undefined : JSON.stringify(body) });
    } catch {
      this.onLog("error", `${method} ${path}: network error`);
      throw new ApiError(0, "network_error", "The server cannot be reached.");
    }
    if (raw && res.ok) {
      this.onLog("http", `${method} ${path} → ${res.status}`);
      return res;
    }
    const data = await res.json().catch(() => null);
    this.onLog(res.ok ? "http" : "error", `${method} ${path} → ${res.status}` + (data ? " " + redact(data) : ""));
    if (res.ok) return data;
    const err = new ApiError(res.status, (data && data.error) || "http_error",
      (data && data.message) || `Request failed with HTTP ${res.status}`, data);
    if (retry && token === undefined && err.code === "token_expired" && await this.refresh()) {
      return this.request(path, { method, body, form, raw, retry: false });
    }
    if (err.status === 401 && token === undefined && err.code !== "token_expired") this.end(`Session ended: ${err.message}`);
    throw err;
  }

  /** Register (when asked) and log in; keeps the tokens. */
  async login(username, password, { register = false } = {}) {
    const credentials = { username, password };
    if (register) await this.request("/api/auth/register", { method: "POST", body: credentials, token: null });
    const data = await this.request("/api/auth/login", { method: "POST", body: credentials, token: null });
    this.session = { access: data.access_token, refresh: data.refresh_token, user: data.user };
    save(this.session);
    return data.user;
  }

  /** End this login on the server (both its tokens are revoked and its sockets closed everywhere) and
   * forget it. The refresh token outlives the access token, so it is the one that can always do it. */
  async logout() {
    const { access, refresh } = this.session || {};
    const token = refresh || access;
    if (token) await this.request("/api/auth/logout", { method: "POST", token, retry: false }).catch(() => {});
    this.forget();
  }

  /** Drop the tokens without telling the server. */
  forget() {
    this.session = null;
    save(null);
  }

  end(message) {
    if (!this.session) return;
    this.forget();
    this.onSessionEnd(message);
  }

  /** Swap the refresh token for a new access token; concurrent callers share one request. */
  refresh() {
    if (!this.session || !this.session.refresh) return Promise.resolve(false);
    if (!this._refreshing) {
      this._refreshing = this.request("/api/auth/refresh", { method: "POST", token: this.session.refresh, retry: false })
        .then((data) => {
          this.session.access = data.access_token;
          save(this.session);
          return true;
        })
        .catch((err) => {
          if (err.status === 401) this.end(`Session ended: ${err.message}`);
          return false;
        })
        .finally(() => { this._refreshing = null; });
    }
    return this._refreshing;
  }

  /** A single-use ticket to open one socket with (no token in the URL). */
  async ticket() {
    if (this.session && isExpiring(this.session.access) && !await this.refresh()) {
      throw new ApiError(401, "token_expired", "Session expired");
    }
    return (await this.request("/api/ws-ticket", { method: "POST" })).ticket;
  }

  current() { return this.request("/api/emotions/current"); }

  setEmotion(body) { return this.request("/api/emotions", { method: "POST", body }); }

  history({ limit = 50, before } = {}) {
    const query = new URLSearchParams({ limit: String(limit) });
    if (before) query.set("before", String(before));
    return this.request(`/api/emotions?${query}`);
  }

  devices() { return this.request("/api/devices"); }

  /** Detect an emotion from a sentence (`text`), a picture (`image`, a Blob) or both; with `apply`
   * ("true" or "always") it is also stored, once per `clientMsgId`, as if this device had set it. */
  detect({ text, image, imageName = "picture.jpg", apply, clientMsgId, device } = {}) {
    const path = apply ? `/api/emotions/detect?apply=${encodeURIComponent(apply)}` : "/api/emotions/detect";
    const fields = { text, client_msg_id: clientMsgId, device };
    if (!image) {
      const body = Object.fromEntries(Object.entries(fields).filter(([, value]) => value));
      return this.request(path, { method: "POST", body });
    }
    const form = new FormData();
    form.append("image", image, imageName);
    for (const [name, value] of Object.entries(fields)) if (value) form.append(name, value);
    return this.request(path, { method: "POST", form });
  }

  stats(params) { return this.request(`/api/emotions/stats?${new URLSearchParams(params)}`); }

  /** The export as a Response (streamed by the server), to save as a file. */
  exportFile(format) { return this.request(`/api/emotions/export?format=${encodeURIComponent(format)}`, { raw: true }); }
}

function load() {
  try { return JSON.parse(sessionStorage.getItem(STORE_KEY)) || null; } catch { return null; }
}

function save(session) {
  if (session) sessionStorage.setItem(STORE_KEY, JSON.stringify(session));
  else sessionStorage.removeItem(STORE_KEY);
}

// Tokens are shortened in the developer log: enough to tell them apart, not enough to use them.
function redact(data) {
  return JSON.stringify(data, (key, value) =>
    /_token$/.test(key) && typeof value === "string" ? value.slice(0, 12) + "…" : value);
}

function isExpiring(token) {
  try {
    const payload = JSON.parse(atob(token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/")));
    return payload.exp * 1000 <= Date.now() + 5000; // a little early, for clock skew
  } catch { return false; }
}
