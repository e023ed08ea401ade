// The header (source, next run, Run now) and the overview: counts, latest run, strip chart.

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
    const [status, stats, recent] = await Promise.all([
      getJSON("api/status"),
      getJSON("api/job_logs/stats"),
      getJSON("api/job_logs?per_page=100"),
    ]);
    if (ticket !== asked) return;  // a newer answer is on its way
    clearTimeout(again);
    again = setTimeout(refreshSoon, STATUS_EVERY_MS);
    header(status);
    counts(stats);
    latest(recent.items[0]);
    strip(recent.items);
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
  $("strip").replaceChildren();
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

function strip(items) {
  const chart = $("strip");
  const runs = [...items].reverse();
  const width = 1000;
  const height = 80;
  const bar = width / 100;
  const longest = Math.max(1, ...runs.map((run) => run.duration_seconds ?? 0));
  chart.setAttribute("viewBox", `0 0 ${width} ${height}`);
  chart.setAttribute("preserveAspectRatio", "none");
  chart.replaceChildren(...runs.map((run, index) => {
    const seconds = run.duration_seconds ?? longest;
    const barHeight = Math.max(3, (seconds / longest) * (height - 2));
    const rect = svg("rect", {
      x: index * bar + 1, y: height - barHeight, width: bar - 2, height: barHeight,
      class: `status-${run.status}`, "data-name": run.name, tabindex: 0, role: "link",
      "aria-label": `${run.name}: ${STATUS_WORDS[run.status]}, ${duration(run.duration_seconds)}`,
    });
    const title = svg("title");
    title.textContent = `${run.name} — ${STATUS_WORDS[run.status]}, ${duration(run.duration_seconds)}`;
    rect.append(title);
    return rect;
  }));
}

export function wireStrip(navigate) {
  const open = (event) => {
    const name = event.target.closest("rect")?.dataset.name;
    if (name) navigate(`runs/${name}`);
  };
  $("strip").addEventListener("click", open);
  $("strip").addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") open(event);
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
