// The header (source, next run, Run now) and the overview: counts, latest run, and the chart of
// runs on a time axis over a chosen window (buckets from api/job_logs/timeline).

import { getJSON, post, report } from "./api.js";
import { $, STATUS_WORDS, badge, duration, el, say, svg, when } from "./dom.js";
import * as freshness from "./freshness.js";
import { onJobLog } from "./live.js";

let running = null;
let refreshing = null;
// Freshness changes with time alone (a sync that stops runs writes no events): look again.
const STATUS_EVERY_MS = 30_000;
let again = null;

export function start(navigate) {
  $("run-now").addEventListener("click", () => runNow(navigate));
  onJobLog(() => refreshSoon());
}

function refreshSoon() {
  clearTimeout(refreshing);
  refreshing = setTimeout(refresh, 150);
}

let asked = 0;

export async function refresh() {
  const ticket = ++asked;
  try {
    const [status, stats, recent, timeline] = await Promise.all([
      getJSON("api/status"),
      getJSON("api/job_logs/stats"),
      getJSON("api/job_logs?per_page=1"),
      getJSON(timelineURL()),
    ]);
    if (ticket !== asked) return;  // a newer answer is on its way
    clearTimeout(again);
    again = setTimeout(refreshSoon, STATUS_EVERY_MS);
    header(status);
    counts(stats);
    latest(recent.items[0]);
    shownTimeline = timeline;
    chart(timeline);
  } catch (error) {
    report(error);
  }
}

/** Forget every figure shown (signed out): answers still on their way are dropped too. */
export function clear() {
  asked += 1;
  clearTimeout(refreshing);
  clearTimeout(again);
  freshness.clear();
  running = null;
  $("source").textContent = "…";
  $("next-run").textContent = "…";
  for (const key of ["total", "success", "error", "processing", "pending"]) {
    $(`count-${key}`).textContent = "–";
  }
  $("latest").replaceChildren("none yet");
  shownTimeline = null;
  $("chart").replaceChildren();
}

function header(status) {
  const source = status.source.kind === "demo" ? "demo source" : status.source.server || "ODBC";
  $("source").textContent = source;
  const next = status.sync.next_runs;
  $("next-run").textContent = next.length ? when(next[0]) : "not scheduled";
  $("next-run").title = next.length ? `Then ${next.slice(1).map(when).join(", ")}` : "";
  freshness.show(status);
  running = status.running;
  $("run-now").disabled = running !== null;
  $("run-now").title = running ? `Run ${running.name} is in progress` : "Run the sync now";
}

function counts(stats) {
  for (const key of ["total", "success", "error", "processing", "pending"]) {
    $(`count-${key}`).textContent = stats[key].toLocaleString();
  }
}

function latest(log) {
  const box = $("latest");
  if (!log) {
    box.replaceChildren("none yet");
    return;
  }
  box.replaceChildren(
    el("a", { href: `runs/${log.name}`, "data-link": "", text: log.name }), " ",
    badge(log.status), " ", duration(log.duration_seconds),
  );
}

// The chart's windows: how far back, and how many buckets (so a bar is 5 min, 30 min or 2 h).
const WINDOWS = {
  "6h": { hours: 6, buckets: 72 },
  "24h": { hours: 24, buckets: 288 },
  "7d": { hours: 24 * 7, buckets: 336 },
  "30d": { hours: 24 * 30, buckets: 360 },
};
const WINDOW_KEY = "joblog.window";
let windowName = WINDOWS[localStorage.getItem(WINDOW_KEY)] ? localStorage.getItem(WINDOW_KEY) : "24h";
let shownTimeline = null;
const CHART = { height: 150, left: 44, right: 8, top: 8, bottom: 30, floor: 6 };
const axisTime = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
const axisDay = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric" });
const hoverTime = new Intl.DateTimeFormat(undefined, {
  month: "short", day: "numeric", hour: "2-digit", minute: "2-digit",
});

function timelineURL() {
  const { hours, buckets } = WINDOWS[windowName];
  const until = new Date();
  const since = new Date(until.getTime() - hours * 3600_000);
  const query = new URLSearchParams({ since: since.toISOString(), until: until.toISOString(), buckets });
  return `api/job_logs/timeline?${query}`;
}

function secondsText(seconds) {
  if (seconds < 60) return `${Math.round(seconds)} s`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

/** Bars at their buckets' start times, as tall as the bucket's longest run; failures hatched
 * and at least CHART.floor high; gaps of the schedule marked under the axis. */
function chart(timeline) {
  const box = $("chart");
  const width = Math.max(320, Math.round(box.clientWidth || 1000));
  const { height, left, right, top, bottom, floor } = CHART;
  const plotWidth = width - left - right;
  const plotHeight = height - top - bottom;
  const since = Date.parse(timeline.since);
  const span = Date.parse(timeline.until) - since;
  const x = (iso) => left + ((Date.parse(iso) - since) / span) * plotWidth;
  const barWidth = Math.max(1, (timeline.bucket_seconds * 1000 / span) * plotWidth - 1);
  const longest = Math.max(1, ...timeline.buckets.map((b) => b.longest_seconds ?? 0));
  const base = top + plotHeight;
  box.setAttribute("viewBox", `0 0 ${width} ${height}`);
  const hatch = svg("pattern", { id: "hatch", width: 6, height: 6, patternUnits: "userSpaceOnUse", patternTransform: "rotate(45)" });
  hatch.append(svg("rect", { width: 6, height: 6, class: "status-error" }), svg("line", { x1: 0, y1: 0, x2: 0, y2: 6, class: "hatch-line" }));
  const defs = svg("defs");
  defs.append(hatch);
  const parts = [defs];
  // The duration axis: 0, half and the longest.
  for (const share of [0, 0.5, 1]) {
    const y = base - share * plotHeight;
    parts.push(svg("line", { x1: left, x2: width - right, y1: y, y2: y, class: share ? "grid" : "axis" }));
    const label = svg("text", { x: left - 4, y: y + 4, "text-anchor": "end" });
    label.textContent = share ? secondsText(longest * share) : "0";
    parts.push(label);
  }
  // The time axis: five labels.
  for (let k = 0; k <= 4; k += 1) {
    const at = since + (span * k) / 4;
    const label = svg("text", { x: left + (plotWidth * k) / 4, y: height - 8, "text-anchor": k === 0 ? "start" : k === 4 ? "end" : "middle" });
    label.textContent = span > 36 * 3600_000 ? axisDay.format(at) : axisTime.format(at);
    parts.push(label);
  }
  for (const gap of timeline.gaps) {
    const from = x(gap.start);
    const rect = svg("rect", { x: from, y: base + 2, width: Math.max(2, x(gap.end) - from), height: 5, class: "gap", "data-gap-start": gap.start, "data-gap-end": gap.end });
    const title = svg("title");
    title.textContent = `No run from ${hoverTime.format(new Date(gap.start))} to ${hoverTime.format(new Date(gap.end))}, though the schedule wanted some`;
    rect.append(title);
    const mark = svg("text", { x: from, y: base + 18, class: "gap-mark" });
    mark.textContent = "✕";
    parts.push(rect, mark);
  }
  for (const bucket of timeline.buckets) {
    const failed = bucket.failed > 0;
    const going = bucket.going > 0 && !failed;
    const seconds = bucket.longest_seconds ?? longest;
    const barHeight = Math.max(failed ? floor : 2, (seconds / longest) * plotHeight);
    const status = failed ? "error" : going ? "processing" : "success";
    const rect = svg("rect", {
      x: x(bucket.start), y: base - barHeight, width: barWidth, height: barHeight,
      class: `bar status-${status}`, ...(failed ? { fill: "url(#hatch)" } : {}),
      "data-name": bucket.latest_name, "data-failed": bucket.failed, "data-runs": bucket.runs,
      "data-start": bucket.start, tabindex: 0, role: "link",
    });
    const words = [`${bucket.runs} run${bucket.runs === 1 ? "" : "s"}`];
    if (bucket.failed) words.push(`${bucket.failed} failed`);
    if (bucket.going) words.push(`${bucket.going} going on`);
    const text = `${hoverTime.format(new Date(bucket.start))}: ${words.join(", ")}; `
      + `longest ${bucket.longest_seconds === null ? "—" : duration(bucket.longest_seconds)}; `
      + `latest ${bucket.latest_name}, ${STATUS_WORDS[bucket.latest_status]}`
      + (bucket.latest_records === null ? "" : `, ${bucket.latest_records.toLocaleString("en")} records`);
    rect.setAttribute("aria-label", text);
    const title = svg("title");
    title.textContent = text;
    rect.append(title);
    parts.push(rect);
    if (failed) {
      // A shape as well as a colour: a triangle over every bar with a failure.
      const middle = x(bucket.start) + barWidth / 2;
      const tip = base - barHeight - 2;
      parts.push(svg("path", { d: `M${middle - 3} ${tip - 5}h6l-3 5z`, class: "fail-mark status-error" }));
    }
  }
  box.replaceChildren(...parts);
}

export function wireChart(navigate) {
  const open = (event) => {
    const name = event.target.closest("rect.bar")?.dataset.name;
    if (name) navigate(`runs/${name}`);
  };
  $("chart").addEventListener("click", open);
  $("chart").addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") open(event);
  });
  for (const button of document.querySelectorAll(".windows button")) {
    button.setAttribute("aria-pressed", String(button.dataset.window === windowName));
    button.addEventListener("click", async () => {
      windowName = button.dataset.window;
      localStorage.setItem(WINDOW_KEY, windowName);
      for (const other of document.querySelectorAll(".windows button")) {
        other.setAttribute("aria-pressed", String(other === button));
      }
      try {
        shownTimeline = await getJSON(timelineURL());
        chart(shownTimeline);
      } catch (error) {
        report(error);
      }
    });
  }
  window.addEventListener("resize", () => {
    if (shownTimeline) chart(shownTimeline);
  });
}

async function runNow(navigate) {
  $("run-now").disabled = true;
  try {
    const log = await post("api/job_logs");
    say("");
    navigate(`runs/${log.name}`);
  } catch (error) {
    report(error);
  } finally {
    refresh();
  }
}
