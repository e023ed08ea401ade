// The list of runs: most recent first, filters, paging, live status changes.

import { getJSON, report } from "./api.js";
import { $, badge, duration, el, when } from "./dom.js";
import { onJobLog } from "./live.js";

const PER_PAGE = 25;
let page = 1;
let total = 0;
let moreThanTotal = false;  // a search counts up to a cap: past it, total is a lower bound
let typing = null;
let changes = null;
let asked = 0;

export function start(navigate) {
  // A whole row opens its run (the name stays a real link for the keyboard and new tabs),
  // so a click that lands beside the name's text is not lost.
  $("runs-table").tBodies[0].addEventListener("click", (event) => {
    const row = event.target.closest("tr[data-name]");
    if (!row || event.target.closest("a") || event.button !== 0) return;
    if (String(window.getSelection() ?? "") !== "") return;  // the user is selecting text
    navigate(`runs/${row.dataset.name}`);
  });
  const form = $("filters");
  form.addEventListener("submit", (event) => event.preventDefault());
  form.addEventListener("input", () => {
    page = 1;  // a new filter starts on its first page, whatever else reloads meanwhile
    clearTimeout(typing);
    typing = setTimeout(load, 250);
  });
  $("prev-page").addEventListener("click", () => { page -= 1; load(); });
  $("next-page").addEventListener("click", () => { page += 1; load(); });
  onJobLog(() => {
    clearTimeout(changes);
    changes = setTimeout(load, 200);
  });
}

/** Forget the runs shown (signed out): answers still on their way are dropped too. */
export function clear() {
  asked += 1;
  clearTimeout(typing);
  clearTimeout(changes);
  total = 0;
  moreThanTotal = false;
  $("runs-table").tBodies[0].replaceChildren();
  $("runs-empty").hidden = true;
  $("page-info").textContent = "";
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
  const ticket = ++asked;
  try {
    const body = await getJSON(`api/job_logs?${query()}`);
    if (ticket !== asked) return;  // a newer answer is on its way
    total = body.total;
    moreThanTotal = body.total_is_lower_bound === true;
    render(body.items);
  } catch (error) {
    report(error);
  }
}

function render(items) {
  // Rows that did not change are kept as they are, so a live update never swaps the row
  // under the pointer of someone about to click it.
  const body = $("runs-table").tBodies[0];
  const before = new Map([...body.rows].map((tr) => [tr.dataset.key, tr]));
  const rows = items.map((log) => {
    const key = `${log.name} ${log.status} ${log.updated_at}`;
    return before.get(key) ?? el("tr", { "data-name": log.name, "data-key": key },
      el("td", {}, el("a", { href: `runs/${log.name}`, "data-link": "", text: log.name })),
      el("td", {}, badge(log.status)),
      el("td", {}, el("time", { datetime: log.created_at, title: log.created_at, text: when(log.created_at) })),
      el("td", { text: duration(log.duration_seconds) }),
    );
  });
  const same = rows.length === body.rows.length && rows.every((tr, i) => tr === body.rows[i]);
  if (!same) body.replaceChildren(...rows);
  $("runs-empty").hidden = items.length > 0;
  const pages = Math.max(1, Math.ceil(total / PER_PAGE));
  if (moreThanTotal) {
    // Only the first runs were counted: the last page is not known, a full page may have more.
    $("page-info").textContent = `Page ${page} · ${total.toLocaleString()}+ runs`;
    $("next-page").disabled = items.length < PER_PAGE;
  } else {
    $("page-info").textContent = `Page ${page} of ${pages} · ${total.toLocaleString()} runs`;
    $("next-page").disabled = page >= pages;
  }
  $("prev-page").disabled = page <= 1;
}
