// Is open_orders fresh? The header's answer (from api/status's "sync"), aging in place, and
// the same state in the tab's title and favicon, so a late or failed sync shows from another tab.

import { $, el } from "./dom.js";

const ICON_COLOURS = { fresh: "#1a7f37", late: "#b35900", never: "#59636e", paused: "#59636e", failed: "#cf222e" };
const TITLE_MARKS = { late: "Late", never: "Never synced", paused: "Paused", failed: "Failed" };
let shown = null;  // { status, at }: the last api/status and when it came
let ticking = null;
let pageTitle = "Job log";

const relative = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });
const dayTime = new Intl.DateTimeFormat(undefined, { weekday: "short", hour: "2-digit", minute: "2-digit" });

/** "4 minutes ago", "in 3 hours": from now to ``iso``. */
export function ago(iso, now = Date.now()) {
  const seconds = (new Date(iso).getTime() - now) / 1000;
  const size = Math.abs(seconds);
  if (size < 45) return relative.format(Math.round(seconds), "second");
  if (size < 45 * 60) return relative.format(Math.round(seconds / 60), "minute");
  if (size < 36 * 3600) return relative.format(Math.round(seconds / 3600), "hour");
  return relative.format(Math.round(seconds / 86400), "day");
}

/** Show ``status`` (api/status's answer) and keep its times current. */
export function show(status) {
  shown = { status };
  render();
  clearInterval(ticking);
  ticking = setInterval(render, 1000);
}

/** Forget it (signed out). */
export function clear() {
  shown = null;
  clearInterval(ticking);
  ticking = null;
  const box = $("freshness");
  box.hidden = true;
  box.replaceChildren();
  mark(null);
}

/** The page's own title (a run's, the overview's); the state's mark goes before it. */
export function setTitle(title) {
  pageTitle = title;
  mark(shown ? state(shown.status) : null);
}

function state(status) {
  const sync = status.sync;
  if (sync.state === "fresh" && sync.last_error && status.last_success_at
      && sync.last_error.job_log.created_at > status.last_success_at) {
    return "failed";  // fresh enough still, but the latest finished run failed
  }
  return sync.state;
}

function render() {
  if (!shown) return;
  const { status } = shown;
  const sync = status.sync;
  const now = Date.now();
  const which = state(status);
  const box = $("freshness");
  box.dataset.state = which;
  const parts = [];
  if (sync.state === "never") {
    parts.push(el("strong", { text: "Never synced" }), " — no run has succeeded yet");
  } else if (sync.state === "late") {
    parts.push(
      el("strong", { text: "Late" }),
      ` — no success since ${timeText(status.last_success_at)} (${ago(status.last_success_at, now)})`,
    );
  } else if (sync.state === "paused") {
    parts.push(
      el("strong", { text: "Paused" }),
      ` — outside the schedule; next run ${dayTime.format(new Date(sync.next_runs[0]))} (${ago(sync.next_runs[0], now)})`,
    );
  } else {
    parts.push(el("strong", { text: "Fresh" }), ` — last success ${ago(status.last_success_at, now)}`);
  }
  const failure = sync.last_error;
  if (failure && (sync.state === "late" || sync.state === "never" || which === "failed")) {
    parts.push(
      el("br"),
      el("span", { className: "freshness-error" },
        "Last error: ",
        el("a", { href: `runs/${failure.job_log.name}`, "data-link": "", text: failure.line || "(no message)" }),
        ` (${ago(failure.job_log.updated_at, now)})`),
    );
  }
  box.replaceChildren(...parts);
  box.hidden = false;
  mark(which);
}

function timeText(iso) {
  return dayTime.format(new Date(iso));
}

function mark(which) {
  const prefix = which && TITLE_MARKS[which];
  document.title = prefix ? `${prefix} · ${pageTitle}` : pageTitle;
  const colour = ICON_COLOURS[which ?? "fresh"];
  const symbol = which === "failed" || which === "late"
    ? '<path d="M8 3.5v5.5M8 11.6v.9" stroke="#fff" stroke-width="2" stroke-linecap="round"/>'
    : '<path d="M4 4h8M4 8h6M4 12h8" stroke="#fff" stroke-width="1.6" stroke-linecap="round"/>';
  const icon = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><rect width="16" height="16" rx="3" fill="${colour}"/>${symbol}</svg>`;
  const link = document.querySelector('link[rel="icon"]');
  const href = `data:image/svg+xml,${encodeURIComponent(icon)}`;
  if (link && link.getAttribute("href") !== href) link.setAttribute("href", href);
}
