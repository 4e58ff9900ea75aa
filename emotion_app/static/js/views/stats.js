// "How your days went": time per emotion per day (stacked bars), each emotion's share of the time
// and its longest stretch, for the last 7 or 30 days, in the browser's time zone.
import { stackedBars } from "../charts.js";
import { dayKey, duration, shortDate, timeZone } from "../format.js";
import { swatch, title } from "../palette.js";

/** The statistics view; `refresh()` reloads the period shown. */
export class Stats {
  constructor(api, vocabulary, palette, onError) {
    Object.assign(this, { api, vocabulary, palette, onError });
    this.days = 7;
    this._request = 0;
    this.canvas = document.getElementById("chart");
    this.rows = document.getElementById("summary-rows");
    this.empty = document.getElementById("stats-empty");
    this.buttons = Array.from(document.querySelectorAll("#stats [data-days]"));
    for (const button of this.buttons) {
      button.addEventListener("click", () => {
        this.days = Number(button.dataset.days);
        for (const other of this.buttons) other.setAttribute("aria-pressed", String(other === button));
        this.refresh();
      });
    }
  }

  /** Reload now. */
  async refresh() {
    const first = new Date();
    first.setDate(first.getDate() - (this.days - 1));
    const request = ++this._request;
    try {
      // From local midnight `days` days back to now, in day buckets of this browser's time zone.
      const stats = await this.api.stats({ bucket: "day", tz: timeZone, from: dayKey(first) });
      if (request === this._request) this.render(stats);
    } catch (err) {
      this.onError(err);
    }
  }

  /** Reload soon, once, however many changes arrive meanwhile. */
  refreshSoon() {
    clearTimeout(this._soon);
    this._soon = setTimeout(() => this.refresh(), 500);
  }

  render(stats) {
    const hours = (seconds) => Math.round((seconds / 3600) * 100) / 100;
    const series = this.vocabulary
      .filter((emotion) => stats.buckets.some((bucket) => bucket.emotions[emotion]))
      .map((emotion) => ({
        label: `${this.palette[emotion].emoji} ${title(emotion)}`,
        color: this.palette[emotion].color,
        data: stats.buckets.map((bucket) => hours((bucket.emotions[emotion] || { seconds: 0 }).seconds)),
      }));
    // A day holds 24 hours (25 across a DST change: the axis grows to fit).
    const tallest = Math.max(0, ...stats.buckets.map((_, i) => series.reduce((sum, s) => sum + s.data[i], 0)));
    stackedBars(this.canvas, stats.buckets.map((bucket) => shortDate(bucket.label)), series,
      { format: (value) => duration(value * 3600), tick: (value) => `${value} h`, max: Math.max(24, Math.round(tallest)), step: 6 });
    const ranked = Object.entries(stats.totals).sort((a, b) => b[1].seconds - a[1].seconds);
    this.canvas.setAttribute("aria-label", `Time per emotion per day, last ${this.days} days: ` +
      (ranked.map(([emotion, total]) => `${emotion} ${duration(total.seconds)}`).join(", ") || "nothing tracked"));
    this.rows.replaceChildren(...ranked.map(([emotion, total]) => this._row(emotion, total)));
    this.empty.hidden = ranked.length > 0;
  }

  _row(emotion, total) {
    const look = this.palette[emotion] || { emoji: "•", color: "" };
    const row = document.createElement("tr");
    row.dataset.emotion = emotion;
    const name = document.createElement("th");
    name.scope = "row";
    name.append(swatch(look), " ", title(emotion));
    const time = document.createElement("td");
    time.className = "time";
    time.textContent = duration(total.seconds);
    const share = document.createElement("td");
    share.className = "share";
    const percent = Math.round(total.share * 100);
    const bar = document.createElement("span");
    bar.className = "bar";
    bar.setAttribute("aria-hidden", "true");
    bar.style.width = `${percent}%`;
    bar.style.backgroundColor = look.color;
    share.append(`${percent} %`, bar);
    const longest = document.createElement("td");
    longest.className = "longest";
    if (total.longest && total.longest.seconds > 0) {
      const start = new Date(total.longest.start);
      longest.textContent = `${duration(total.longest.seconds)} (from ${shortDate(dayKey(start))}, ` +
        `${start.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })})`;
    } else {
      longest.textContent = "–";
    }
    row.append(name, time, share, longest);
    return row;
  }
}
