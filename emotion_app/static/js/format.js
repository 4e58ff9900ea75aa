// Dates and durations as people read them, in the browser's own time zone and language.

const dayFormat = new Intl.DateTimeFormat(undefined, { weekday: "long", day: "numeric", month: "long", year: "numeric" });
const shortDay = new Intl.DateTimeFormat(undefined, { weekday: "short", day: "numeric", month: "short" });
const timeFormat = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });

/** The browser's IANA time zone (what the statistics are bucketed in). */
export const timeZone = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";

/** "14:05" */
export function clock(date) {
  return timeFormat.format(date);
}

/** A day key that sorts and compares: "2026-12-03" in local time. */
export function dayKey(date) {
  const pad = (n) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`;
}

/** "Today", "Yesterday", or "Tuesday 1 December 2026". */
export function dayTitle(date, now = new Date()) {
  const key = dayKey(date);
  if (key === dayKey(now)) return "Today";
  const yesterday = new Date(now);
  yesterday.setDate(now.getDate() - 1);
  if (key === dayKey(yesterday)) return "Yesterday";
  return dayFormat.format(date);
}

/** "Tue 1 Dec" for a "YYYY-MM-DD" label (read as a local date). */
export function shortDate(label) {
  const [y, m, d] = label.slice(0, 10).split("-").map(Number);
  return shortDay.format(new Date(y, m - 1, d));
}

/** "2 h 5 min", "5 min", "40 s", for a number of seconds. */
export function duration(seconds) {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  const minutes = Math.round(s / 60);
  if (minutes < 60) return `${minutes} min`;
  const days = Math.floor(minutes / 1440);
  const hours = Math.floor((minutes % 1440) / 60);
  const rest = minutes % 60;
  const parts = [];
  if (days) parts.push(`${days} d`);
  if (hours) parts.push(`${hours} h`);
  if (rest && !days) parts.push(`${rest} min`);
  return parts.join(" ") || "0 min";
}

/** "just now", "5 min ago", "3 h ago", or a date. */
export function ago(date, now = new Date()) {
  const seconds = (now - date) / 1000;
  if (seconds < 45) return "just now";
  if (seconds < 86400) return `${duration(seconds)} ago`;
  return `${dayTitle(date, now)}, ${clock(date)}`;
}

/** "93 %" for 0.93. */
export function percent(share) {
  return `${Math.round(share * 100)} %`;
}

const DETECTED_FROM = { text: "a sentence", face: "a face", "text+face": "a sentence and a face" };

/** "detected from a face, 93 %" for an event whose emotion was detected (source "detected:face"), else "". */
export function detectedNote(event) {
  const source = event && typeof event.source === "string" ? event.source : "";
  if (!source.startsWith("detected:")) return "";
  const kind = source.slice("detected:".length);
  const sure = typeof event.confidence === "number" ? `, ${percent(event.confidence)}` : "";
  return `detected from ${DETECTED_FROM[kind] || kind}${sure}`;
}
