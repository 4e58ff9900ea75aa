// One look per emotion, used by every view: an emoji and a colour from the Okabe–Ito palette, which
// stays distinguishable with the common forms of colour blindness. Colour never carries meaning
// alone: every use shows the emotion's name (or emoji) beside it.

const KNOWN = {
  happy: { emoji: "😊", color: "#E69F00" },
  sad: { emoji: "😢", color: "#0072B2" },
  angry: { emoji: "😠", color: "#D55E00" },
  surprised: { emoji: "😮", color: "#F0E442" },
  fearful: { emoji: "😨", color: "#CC79A7" },
  disgusted: { emoji: "🤢", color: "#009E73" },
  neutral: { emoji: "😐", color: "#999999" },
};
// For emotions a deployment adds to its vocabulary (EMOTIONS): the palette's remaining colours.
const SPARE = ["#56B4E9", "#000000", "#E69F00", "#0072B2", "#D55E00", "#F0E442", "#CC79A7", "#009E73"];

/** The emoji and colour of each emotion of `vocabulary`, in its order: {name: {emoji, color}}. */
export function paletteFor(vocabulary) {
  const looks = {};
  let spare = 0;
  for (const name of vocabulary) {
    looks[name] = KNOWN[name] || { emoji: "🔹", color: SPARE[spare++ % SPARE.length] };
  }
  return looks;
}

/** The emotion's emoji in a ring of its colour, hidden from screen readers (its name is always beside it). */
export function swatch(look) {
  const ring = document.createElement("span");
  ring.className = "swatch";
  ring.setAttribute("aria-hidden", "true");
  ring.style.borderColor = look.color;
  ring.textContent = look.emoji;
  return ring;
}

/** "Happy" for "happy". */
export function title(name) {
  return name ? name.charAt(0).toUpperCase() + name.slice(1) : "";
}
