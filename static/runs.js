// The list of runs: most recent first, filters, paging, live status changes.

import { getJSON, report } from "./api.js";
import { $, badge, duration, el, when } from "./dom.js";
import { onJobLog } from "./live.js";

const PER_PAGE = 25;
let page = 1;
let total = 0;
let loading = null;

export function start() {
  const form = $("filters");
  form.addEventListener("submit", (event) => event.preventDefault());
  form.addEventListener("input", () => {
    clearTimeout(loading);
    loading = setTimeout(() => { page = 1; load(); }, 250);
  });
  $("prev-page").addEventListener("click", () => { page -= 1; load(); });
  $("next-page").addEventListener("click", () => { page += 1; load(); });
  onJobLog(() => {
    clearTimeout(loading);
    loading = setTimeout(load, 200);
  });
  load();
}

function query() {
  const params = new URLSearchParams({ page: String(page), per_page: String(PER_PAGE) });
  const status = $("filter-status").value;
  const since = $("filter-since").value;
  const until = $("filter-until").value;
  const q = $("filter-q").value.trim();
  if (status) params.set("status", status);
  // Dates are the viewer's days: from its midnight, up to the next one.
  if (since) params.set("since", new Date(`${since}T00:00:00`).toISOString());
  if (until) {
    const end = new Date(`${until}T00:00:00`);
    end.setDate(end.getDate() + 1);
    params.set("until", end.toISOString());
  }
  if (q) params.set("q", q);
  return params;
}

export async function load() {
  try {
    const body = await getJSON(`api/job_logs?${query()}`);
    total = body.total;
    render(body.items);
  } catch (error) {
    report(error);
  }
}

function render(items) {
  const rows = items.map((log) => el("tr", { "data-name": log.name },
    el("td", {}, el("a", { href: `runs/${log.name}`, "data-link": "", text: log.name })),
    el("td", {}, badge(log.status)),
    el("td", {}, el("time", { datetime: log.created_at, title: log.created_at, text: when(log.created_at) })),
    el("td", { text: duration(log.duration_seconds) }),
  ));
  $("runs-table").tBodies[0].replaceChildren(...rows);
  $("runs-empty").hidden = items.length > 0;
  const pages = Math.max(1, Math.ceil(total / PER_PAGE));
  $("page-info").textContent = `Page ${page} of ${pages} · ${total.toLocaleString()} runs`;
  $("prev-page").disabled = page <= 1;
  $("next-page").disabled = page >= pages;
}
