// "Timeline": the user's events, newest first, grouped by day in the browser's time zone; older
// pages load as the end of the list scrolls into view, live updates go on top.
import { clock, dayKey, dayTitle, detectedNote, duration } from "../format.js";
import { swatch, title } from "../palette.js";

const PAGE = 50;

/** The timeline view; `reload()` starts again from the newest event, `add(event)` puts a live one on top. */
export class Timeline {
  constructor(api, palette, onError) {
    this.api = api;
    this.palette = palette;
    this.onError = onError;
    this.days = document.getElementById("timeline-days");
    this.more = document.getElementById("timeline-more");
    this.end = document.getElementById("timeline-end");
    this.empty = document.getElementById("timeline-empty");
    this.events = []; // newest first
    this.nextBefore = null;
    this.loading = null;
    this.more.addEventListener("click", () => this.loadOlder());
    // Scrolling near the end of the list loads the next page.
    this.observer = new IntersectionObserver((entries) => {
      if (entries.some((entry) => entry.isIntersecting)) this.loadOlder();
    }, { rootMargin: "200px" });
    this.observer.observe(this.more);
  }

  /** Forget what is shown and load the newest page. */
  async reload() {
    this.events = [];
    this.nextBefore = null;
    this.generation = (this.generation || 0) + 1;
    this.loading = null;
    await this._load(undefined);
  }

  /** Load the page before the oldest event shown, if there is one. */
  loadOlder() {
    if (this.nextBefore == null || this.loading) return this.loading;
    return this._load(this.nextBefore);
  }

  async _load(before) {
    const generation = this.generation;
    this.loading = this.api.history({ limit: PAGE, before })
      .then((page) => {
        if (generation !== this.generation) return;
        const known = new Set(this.events.map((event) => event.id));
        this.events.push(...page.events.filter((event) => !known.has(event.id)));
        this.nextBefore = page.next_before;
        this.render();
      })
      .catch((err) => this.onError(err))
      .finally(() => { if (generation === this.generation) this.loading = null; });
    return this.loading;
  }

  /** Put a new event on top (events already shown are skipped). */
  add(event) {
    if (this.events.some((shown) => shown.id === event.id)) return;
    this.events.push(event);
    this.events.sort((a, b) => b.id - a.id);
    this.render();
  }

  render() {
    const now = new Date();
    const groups = [];
    let group = null;
    this.events.forEach((event, index) => {
      const at = new Date(event.timestamp);
      const key = dayKey(at);
      if (!group || group.key !== key) {
        group = { key, at, items: [] };
        groups.push(group);
      }
      // An emotion lasts until the next (newer) one.
      const newer = index > 0 ? new Date(this.events[index - 1].timestamp) : null;
      group.items.push(this._entry(event, at, newer));
    });
    this.days.replaceChildren(...groups.map(({ key, at, items }) => {
      const section = document.createElement("section");
      section.className = "day";
      section.dataset.day = key;
      const heading = document.createElement("h3");
      heading.textContent = dayTitle(at, now);
      const list = document.createElement("ol");
      list.className = "entries";
      list.append(...items);
      section.append(heading, list);
      return section;
    }));
    this.empty.hidden = this.events.length > 0;
    this.more.hidden = this.nextBefore == null;
    this.end.hidden = this.nextBefore != null || this.events.length === 0;
  }

  _entry(event, at, newer) {
    const look = this.palette[event.emotion] || { emoji: "•", color: "" };
    const item = document.createElement("li");
    item.className = "entry";
    item.dataset.eventId = event.id;
    item.dataset.emotion = event.emotion;
    const time = document.createElement("time");
    time.dateTime = event.timestamp;
    time.textContent = clock(at);
    const name = document.createElement("strong");
    name.textContent = title(event.emotion);
    const detail = document.createElement("span");
    detail.className = "muted";
    const lasted = newer ? `for ${duration((newer - at) / 1000)}` : "ongoing";
    detail.textContent = `${event.device || "unnamed device"} · ${lasted}`;
    const detected = detectedNote(event);
    if (detected) {
      const note = document.createElement("span");
      note.className = "detected-note";
      note.textContent = detected;
      detail.append(" ", note);
    }
    item.append(time, swatch(look), name, detail);
    return item;
  }
}
