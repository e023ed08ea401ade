// One run: every line, numbered, with an anchor (runs/<name>#L12); wrapped by default (a toggle,
// remembered), one line each and windowed past WRAP_MAX lines so 100,000 stay smooth; a live
// tail while it runs, batch progress, the final banner quoting the error in full with a link
// to its line, previous and next runs, find in the whole log, download, copy link, cancel.

import { ApiError, getJSON, post, report } from "./api.js";
import { $, badge, duration, el, say, timeEl, when } from "./dom.js";
import { setTitle } from "./freshness.js";
import { reflect } from "./live.js";
import { isAdmin } from "./session.js";

const ROW = 22;          // px, one line; matches --row in style.css
const OVERSCAN = 20;     // rows rendered above and below the visible ones
const PAGE = 1000;       // details per request, the API's maximum
const AHEAD = 4;         // pages asked for at once while loading a run
const BATCH = /^Batch ([\d,]+)(?:\/([\d,]+))? imported/;
const WRAP_MAX = 2000;   // lines drawn whole (wrapped); past it, one line each, windowed
const WRAP_KEY = "joblog.wrap";

let stream = null;
let lines = [];
let log = null;
let name = null;
let stuck = true;
let drawQueued = false;
let findTimer = null;
let wrap = localStorage.getItem(WRAP_KEY) !== "off";
let rendered = 0;        // lines drawn whole so far (wrapped mode)
let target = null;       // the line number the address points at (#L12)
let revealed = false;    // whether the view went to it once the lines were there

export function start() {
  const viewport = $("run-lines");
  viewport.addEventListener("scroll", () => {
    stuck = viewport.scrollTop + viewport.clientHeight >= viewport.scrollHeight - ROW;
    $("jump-latest").hidden = stuck;
    queueDraw();
  });
  $("jump-latest").addEventListener("click", () => {
    stuck = true;
    viewport.scrollTop = viewport.scrollHeight;
    $("jump-latest").hidden = true;
  });
  $("copy-link").addEventListener("click", copyLink);
  $("wrap-toggle").addEventListener("click", () => {
    wrap = !wrap;
    localStorage.setItem(WRAP_KEY, wrap ? "on" : "off");
    showWrap();
    rendered = 0;
    $("run-lines").querySelector(".lines").replaceChildren();
    draw();
  });
  showWrap();
  for (const box of [viewport, $("run-banner")]) box.addEventListener("click", goToLine);
  $("cancel-run").addEventListener("click", cancel);
  $("find").addEventListener("input", () => {
    clearTimeout(findTimer);
    findTimer = setTimeout(find, 250);
  });
  $("find-results").addEventListener("click", (event) => {
    const id = Number(event.target.closest("li")?.dataset.id);
    if (id) reveal(id);
  });
  window.addEventListener("resize", queueDraw);
}

export function open(runName) {
  close();
  name = runName;
  lines = [];
  log = null;
  stuck = true;
  rendered = 0;
  $("run-lines").querySelector(".lines").replaceChildren();
  const hash = /^#L(\d+)$/.exec(location.hash);
  target = hash ? Number(hash[1]) : null;
  revealed = false;
  if (target) stuck = false;
  $("run-prev").hidden = true;
  $("run-next").hidden = true;
  setTitle(`Run ${name} — Job log`);
  $("run-name").textContent = `Run ${name}`;
  $("run-status").replaceWith(badge("pending", "run-status"));
  $("run-status").textContent = "loading…";
  $("run-times").textContent = "";
  $("run-banner").hidden = true;
  $("run-progress").hidden = true;
  $("jump-latest").hidden = true;
  $("cancel-run").hidden = true;
  $("find").value = "";
  $("find-results").hidden = true;
  $("find-count").textContent = "";
  $("download").href = `api/job_logs/${name}.txt`;
  $("download").setAttribute("download", `${name}.txt`);
  draw();
  load(name);
}

async function load(runName) {
  // The lines so far come in large pages (fast even for 100,000 of them); a run still going
  // is then followed from its last line on.
  try {
    const first = await getJSON(`api/job_logs/${encodeURIComponent(runName)}?details=false`);
    if (runName !== name) return;
    update(first, false);
    neighbours(runName);
    await loadPages(runName);
    if (runName !== name) return;
    if (target && !revealed) {
      revealed = true;
      revealLine(target);
    }
    if (finished(first)) update(first);
    else follow(lastId());
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) {
      $("run-status").textContent = "not found";
      say(`There is no run named ${runName}.`, "error");
    } else {
      report(error);
    }
  }
}

async function loadPages(runName) {
  // Pages follow a cursor (the last id), yet a run's ids are nearly always consecutive: the
  // next few pages are asked for ahead, at the cursors they would have. One is used only when
  // its cursor turns out to be the real one, so a gap in the ids costs time, never a line.
  const pending = new Map();
  const ask = (after) => {
    if (!pending.has(after)) {
      const answer = getJSON(`api/job_logs/${encodeURIComponent(runName)}/details?limit=${PAGE}&after=${after}`);
      answer.catch(() => {});  // an unused guess may fail unseen; a used one is awaited
      pending.set(after, answer);
    }
    return pending.get(after);
  };
  let after = 0;
  for (;;) {
    const page = await ask(after);
    pending.delete(after);
    if (runName !== name) return;
    addAll(page.items);
    queueDraw();
    if (page.next_after === null) return;
    after = page.next_after;
    const { items } = page;
    if (items[items.length - 1].id - items[0].id === items.length - 1) {
      for (let ahead = 1; ahead <= AHEAD; ahead += 1) ask(after + (ahead - 1) * PAGE);
    } else {
      ask(after);
    }
  }
}

const finished = (state) => state.status === "success" || state.status === "error";
const lastId = () => (lines.length ? lines[lines.length - 1].id : 0);

function add(detail) {
  if (detail.id <= lastId()) return;
  lines.push(detail);
  progress(detail.message);
}

function addAll(details) {
  // A page at a time: only its last batch line can show in the progress bar, so only that
  // one is looked at (per line, 100,000 regex matches and bar updates cost ~1 s).
  const last = lastId();
  const fresh = details[0]?.id > last ? details : details.filter((detail) => detail.id > last);
  for (const detail of fresh) lines.push(detail);
  for (let i = fresh.length - 1; i >= 0; i -= 1) {
    if (BATCH.test(fresh[i].message)) {
      progress(fresh[i].message);
      break;
    }
  }
}

export function close() {
  if (stream) stream.close();
  stream = null;
}

/** Close and forget the run shown (signed out): answers still on their way are dropped too. */
export function forget() {
  close();
  name = null;
  log = null;
  lines = [];
  clearTimeout(findTimer);
  $("run-name").textContent = "";
  $("run-times").textContent = "";
  $("run-banner").textContent = "";
  $("run-banner").hidden = true;
  $("find-results").replaceChildren();
  $("download").removeAttribute("href");
  draw();
  showActions();
}

/** Cancel only for an admin, and only while the run is going. */
export function showActions() {
  $("cancel-run").hidden = log === null || finished(log) || !isAdmin();
}

function follow(after) {
  // Replays what came after the last line loaded, then goes on live; on a reconnect the
  // browser sends the last id it has and gets exactly what it missed.
  stream = new EventSource(`api/events?job_log=${encodeURIComponent(name)}&last_event_id=${after}`);
  reflect(stream);
  const mine = stream;
  stream.addEventListener("detail", (event) => {
    add(JSON.parse(event.data));
    queueDraw();
  });
  stream.addEventListener("job_log", (event) => update(JSON.parse(event.data)));
  stream.addEventListener("end", (event) => {
    update(JSON.parse(event.data));
    mine.close();
  });
  stream.addEventListener("error", () => {
    // The browser gives up on a stream for good after any answer but 200: a 204 (the run
    // ended, every line is here) or a proxy's 502 during a restart. Catch up, and follow on
    // if the run is still going.
    if (mine.readyState === EventSource.CLOSED && mine === stream) setTimeout(resume, 1000, mine);
  });
}

async function resume(closed) {
  if (closed !== stream) return;
  try {
    const state = await getJSON(`api/job_logs/${encodeURIComponent(name)}?details=false`);
    for (;;) {
      const page = await getJSON(`api/job_logs/${encodeURIComponent(name)}/details?limit=1000&after=${lastId()}`);
      addAll(page.items);
      if (page.next_after === null) break;
    }
    if (closed !== stream) return;
    queueDraw();
    if (finished(state)) update(state);
    else follow(lastId());
  } catch (error) {
    // The service is still away; a 401 brought up the sign-in form, which follows on by itself.
    if (!(error instanceof ApiError && error.status === 401)) setTimeout(resume, 2000, closed);
  }
}

function update(next, final = true) {
  log = next;
  $("run-status").replaceWith(badge(log.status, "run-status"));
  $("run-times").textContent =
    `started ${when(log.created_at)} · ${log.duration_seconds === null ? "running…" : duration(log.duration_seconds)}`;
  showActions();
  if (final && finished(log)) banner();
}

function banner() {
  const box = $("run-banner");
  const failed = log.status === "error";
  const at = lines.findLastIndex((line) => line.message.startsWith("ERROR"));
  box.className = `banner status-${log.status}`;
  if (!failed) {
    box.textContent = `Run succeeded in ${duration(log.duration_seconds)}`;
  } else if (at < 0) {
    box.textContent = "Run failed";
  } else {
    // The error in full (every line of it), and where it is in the log.
    box.replaceChildren(
      "Run failed: ",
      el("span", { className: "banner-message", text: lines[at].message }),
      " ",
      el("a", { href: `runs/${name}#L${at + 1}`, "data-line": at + 1, text: `line ${at + 1}` }),
    );
  }
  box.hidden = false;
  $("run-progress").hidden = true;
}

function progress(message) {
  const match = BATCH.exec(message);
  if (!match) return;
  const bar = $("run-progress");
  const done = Number(match[1].replaceAll(",", ""));
  const of = match[2] ? Number(match[2].replaceAll(",", "")) : null;
  if (of) {
    bar.max = of;
    bar.value = done;
  } else {
    bar.removeAttribute("value");
  }
  bar.title = match[0];
  bar.hidden = log !== null && (log.status === "success" || log.status === "error");
}

function showWrap() {
  const button = $("wrap-toggle");
  button.setAttribute("aria-pressed", String(wrap));
  button.textContent = wrap ? "Wrap lines: on" : "Wrap lines: off";
}

async function neighbours(runName) {
  try {
    const around = await getJSON(`api/job_logs/${encodeURIComponent(runName)}/neighbours`);
    if (runName !== name) return;
    for (const [id, run] of [["run-prev", around.previous], ["run-next", around.next]]) {
      const link = $(id);
      link.hidden = !run;
      if (run) {
        link.setAttribute("href", `runs/${run.name}`);
        link.title = `Run ${run.name}`;
      }
    }
  } catch {
    // Only the two links are missing; the run itself shows.
  }
}

/** A click on a line number or the banner's link: that line, its address in the bar. */
function goToLine(event) {
  const link = event.target.closest("a[data-line]");
  if (!link || event.ctrlKey || event.metaKey || event.shiftKey || event.button !== 0) return;
  event.preventDefault();
  const number = Number(link.dataset.line);
  const here = new URL(location.href);
  here.hash = `L${number}`;
  history.replaceState(history.state, "", here);
  target = number;
  revealLine(number);
}

function queueDraw() {
  if (drawQueued) return;
  drawQueued = true;
  requestAnimationFrame(() => {
    drawQueued = false;
    draw();
  });
}

const whole = () => wrap && lines.length <= WRAP_MAX;

function draw() {
  const viewport = $("run-lines");
  const spacer = viewport.firstElementChild;
  const list = spacer.firstElementChild;
  const wrapped = whole();
  viewport.classList.toggle("wrapped", wrapped);
  $("wrap-note").hidden = !wrap || wrapped;
  if (wrapped) {
    // Every line drawn, new ones appended: their heights vary, so no window.
    if (list.childElementCount !== rendered) {
      list.replaceChildren();
      rendered = 0;
    }
    spacer.style.height = "";
    list.style.transform = "";
    if (rendered < lines.length) {
      list.append(...lines.slice(rendered).map((detail, i) => row(detail, rendered + i)));
      rendered = lines.length;
    }
    if (stuck) viewport.scrollTop = viewport.scrollHeight;
    return;
  }
  rendered = -1;  // the window below is not the whole log
  spacer.style.height = `${lines.length * ROW}px`;
  if (stuck) viewport.scrollTop = viewport.scrollHeight;
  const first = Math.max(0, Math.floor(viewport.scrollTop / ROW) - OVERSCAN);
  const last = Math.min(lines.length, Math.ceil((viewport.scrollTop + viewport.clientHeight) / ROW) + OVERSCAN);
  list.style.transform = `translateY(${first * ROW}px)`;
  list.replaceChildren(...lines.slice(first, last).map((detail, i) => row(detail, first + i)));
}

/** A line: its number (a link to it), its time, its message; ``index`` undefined in find's
 * results (no number, no anchor). */
function row(detail, index) {
  const text = detail.message;
  const number = index === undefined ? null : index + 1;
  const classes = ["line"];
  if (text.startsWith("ERROR")) classes.push("error");
  if (text.startsWith("WARNING")) classes.push("warning");
  if (number !== null && number === target) classes.push("target");
  return el("li", { className: classes.join(" "), "data-id": detail.id, id: number === null ? null : `L${number}` },
    number === null ? "" : el("a", {
      className: "lineno", href: `runs/${name}#L${number}`, "data-line": number, text: String(number),
      "aria-label": `line ${number}`,
    }),
    timeEl(detail.created_at, true),
    el("span", { className: "message", title: whole() ? null : text, text }),
  );
}

/** Show line ``number`` (1-based) in the middle of the view, marked. */
function revealLine(number) {
  const viewport = $("run-lines");
  if (number < 1 || number > lines.length) return;
  stuck = false;
  for (const marked of viewport.querySelectorAll(".line.target")) marked.classList.remove("target");
  if (whole()) {
    draw();
    const item = document.getElementById(`L${number}`);
    item?.classList.add("target");
    item?.scrollIntoView({ block: "center" });
    return;
  }
  viewport.scrollTop = Math.max(0, (number - 1) * ROW - viewport.clientHeight / 2);
  queueDraw();
}

function reveal(id) {
  let low = 0;
  let high = lines.length - 1;
  while (low <= high) {
    const middle = (low + high) >> 1;
    if (lines[middle].id < id) low = middle + 1;
    else high = middle - 1;
  }
  const viewport = $("run-lines");
  stuck = false;
  if (whole()) {
    draw();
    const item = viewport.querySelector(`li[data-id="${id}"]`);
    item?.classList.add("found");
    item?.scrollIntoView({ block: "center" });
    return;
  }
  viewport.scrollTop = Math.max(0, low * ROW - viewport.clientHeight / 2);
  queueDraw();
  requestAnimationFrame(() => {
    viewport.querySelector(`li[data-id="${id}"]`)?.classList.add("found");
  });
}

async function find() {
  const text = $("find").value.trim();
  const results = $("find-results");
  if (!text) {
    results.hidden = true;
    $("find-count").textContent = "";
    return;
  }
  try {
    const query = new URLSearchParams({ q: text, limit: "1000" });
    const runName = name;
    const page = await getJSON(`api/job_logs/${encodeURIComponent(runName)}/details?${query}`);
    if (runName !== name) return;
    const more = page.next_after !== null;
    $("find-count").textContent =
      `${page.items.length.toLocaleString()}${more ? "+" : ""} matching line${page.items.length === 1 ? "" : "s"}`;
    results.replaceChildren(...page.items.map((detail) => {
      const item = row(detail);
      item.tabIndex = 0;
      return item;
    }));
    results.hidden = page.items.length === 0;
  } catch (error) {
    report(error);
  }
}

async function copyLink() {
  const link = location.href;
  try {
    await navigator.clipboard.writeText(link);
    say("Link copied.");
  } catch {
    say(`Copy this link: ${link}`);
  }
}

async function cancel() {
  $("cancel-run").disabled = true;
  try {
    await post(`api/job_logs/${encodeURIComponent(name)}/cancel`);
    say(`Run ${name} was cancelled.`);
  } catch (error) {
    report(error);
  } finally {
    $("cancel-run").disabled = false;
  }
}

