// The developer panel: the raw frames and requests of this page, newest first.

const LIMIT = 200;
const TAGS = { in: "⬇ in", out: "⬆ out", http: "↔ http", info: "• info", error: "✖ error" };

/** Returns `log(kind, text)`, writing into the list `list`; `clear` empties it. */
export function createLog(list, clear) {
  clear.addEventListener("click", () => list.replaceChildren());
  return function log(kind, text) {
    const item = document.createElement("li");
    item.className = "log-" + kind;
    const time = document.createElement("time");
    time.textContent = new Date().toLocaleTimeString();
    const tag = document.createElement("span");
    tag.className = "tag";
    tag.textContent = TAGS[kind] || kind;
    const body = document.createElement("code");
    body.textContent = text;
    item.append(time, tag, body);
    list.prepend(item);
    while (list.children.length > LIMIT) list.lastElementChild.remove();
  };
}
