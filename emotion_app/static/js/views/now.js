// "Now": the current emotion at a glance, and one click or key press to set a new one.
import { ago, clock, detectedNote } from "../format.js";
import { title } from "../palette.js";

/** Draw the current emotion from the store and send the user's choices to `onSet(emotion)`. */
export function mountNow(store, palette, onSet) {
  const $ = (id) => document.getElementById(id);
  const emoji = $("now-emoji");
  const name = $("now-emotion");
  const meta = $("now-meta");
  const pendingLine = $("now-pending");
  const buttons = Array.from(document.querySelectorAll("#now [data-emotion]"));

  for (const button of buttons) {
    const look = palette[button.dataset.emotion];
    button.querySelector(".swatch").textContent = look.emoji;
    button.querySelector(".swatch").style.borderColor = look.color;
    button.addEventListener("click", () => onSet(button.dataset.emotion));
  }
  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey || !store.get().user) return;
    if (event.target.closest && event.target.closest("input, textarea, select, [contenteditable]")) return;
    const index = Number(event.key) - 1;
    if (Number.isInteger(index) && index >= 0 && index < Math.min(9, buttons.length)) {
      event.preventDefault();
      onSet(buttons[index].dataset.emotion);
    }
  });

  function render() {
    const { current, pending, connection } = store.get();
    const emotion = current && current.emotion;
    const look = emotion && palette[emotion];
    emoji.textContent = look ? look.emoji : "·";
    emoji.style.borderColor = look ? look.color : "";
    name.textContent = emotion ? title(emotion) : "No emotion set yet";
    name.dataset.emotion = emotion || "";
    if (current && current.timestamp) {
      const at = new Date(current.timestamp);
      const from = current.device ? `from ${current.device}` : "from an unnamed device";
      const detected = detectedNote(current);
      meta.textContent = `Since ${clock(at)} (${ago(at)}), ${from}${detected ? `, ${detected}` : ""}`;
    } else {
      meta.textContent = "";
    }
    for (const button of buttons) {
      button.setAttribute("aria-pressed", String(button.dataset.emotion === emotion));
    }
    const waiting = pending.map((frame) => title(frame.emotion)).join(", then ");
    pendingLine.hidden = !pending.length;
    pendingLine.textContent = pending.length
      ? `${waiting}: ${connection === "online" ? "sending…" : "will be sent when the connection is back."}`
      : "";
  }

  store.subscribe((state, changed) => {
    if (changed.some((key) => ["current", "pending", "connection"].includes(key))) render();
  });
  setInterval(render, 30000); // "5 min ago" moves on
  render();
}
