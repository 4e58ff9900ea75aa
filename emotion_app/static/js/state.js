// The page's state in one place: views subscribe and redraw what changed.

/** A tiny store: `get()` the state, `set(patch)` to change part of it, `subscribe(fn)` to hear of changes. */
export function createStore(initial) {
  let state = { ...initial };
  const listeners = new Set();
  return {
    get: () => state,
    set(patch) {
      const changed = Object.keys(patch).filter((key) => state[key] !== patch[key]);
      if (!changed.length) return;
      state = { ...state, ...patch };
      for (const fn of listeners) fn(state, changed);
    },
    subscribe(fn) {
      listeners.add(fn);
      return () => listeners.delete(fn);
    },
  };
}

/** What the page knows when it starts or a session ends. */
export const EMPTY = {
  user: null,        // {id, username} while logged in
  connection: "stopped", // the socket's state: connecting, catching_up, online, offline, stopped
  retryAt: 0,        // when the next reconnect is due (offline)
  current: null,     // the latest event
  pending: [],       // updates chosen here that the server has not confirmed yet
  online: [],        // [{id, name}] the user's devices connected now
  deviceId: null,    // this socket's id among them
};
