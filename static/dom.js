// Small DOM helpers. Text always goes in through textContent, never as HTML.

export const $ = (id) => document.getElementById(id);

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "text") node.textContent = value;
    else if (name === "className") node.className = value;
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children) node.append(child);
  return node;
}

const SVG = "http://www.w3.org/2000/svg";

export function svg(tag, attrs = {}) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
  return node;
}

const timeFormat = new Intl.DateTimeFormat(undefined, {
  year: "numeric", month: "short", day: "2-digit",
  hour: "2-digit", minute: "2-digit", second: "2-digit",
});
const clockFormat = new Intl.DateTimeFormat(undefined, {
  hour: "2-digit", minute: "2-digit", second: "2-digit", fractionalSecondDigits: 3,
});

/** A <time> in the viewer's zone, the exact UTC instant on hover. */
export function timeEl(iso, short = false) {
  const date = new Date(iso);
  return el("time", {
    datetime: iso,
    title: iso,
    text: (short ? clockFormat : timeFormat).format(date),
  });
}

export function when(iso) {
  return iso ? timeFormat.format(new Date(iso)) : "—";
}

export function duration(seconds) {
  if (seconds === null || seconds === undefined) return "running…";
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  const minutes = Math.floor(seconds / 60);
  return `${minutes} min ${Math.round(seconds - minutes * 60)} s`;
}

export const STATUS_WORDS = {
  pending: "pending", processing: "running", error: "failed", success: "succeeded",
};

export function badge(status, id) {
  return el("span", {
    id, className: `badge status-${status}`, text: STATUS_WORDS[status] ?? status,
  });
}

export function say(text, kind = "info") {
  const box = $("message");
  box.textContent = text;
  box.dataset.kind = kind;
  box.hidden = !text;
}
