// The page: an overview with the list of runs, and a view of one run at runs/<name>, shown once
// the service says who is looking (GET api/session); the sign-in form until then.
// Plain ES modules, no build step; every URL is relative to the page's <base>.

import { ApiError, whenUnauthorized } from "./api.js";
import { $, say } from "./dom.js";
import { setTitle } from "./freshness.js";
import { connect, disconnect, whenClosed } from "./live.js";
import * as overview from "./overview.js";
import * as runs from "./runs.js";
import * as runView from "./runview.js";
import { canView, isAdmin, onChange, recheck, signIn, takeSignInLink, whoAmI } from "./session.js";
import * as signin from "./signin.js";

const base = new URL(document.baseURI);
const NOTES = {
  expired: "Your session has ended. Sign in again to go on.",
  "signed-out": "You are signed out.",
};
let running = false;

/** Show the view the address asks for; true when it is a run's. */
function route() {
  if (!running) return false;
  const here = new URL(location.href);
  const path = here.pathname.startsWith(base.pathname) ? here.pathname.slice(base.pathname.length) : "";
  const match = /^runs\/(\d{14}(?:_\d+)?)$/.exec(path);
  $("overview-view").hidden = Boolean(match);
  $("run-view").hidden = !match;
  if (match) {
    runView.open(match[1]);
  } else {
    runView.close();
    setTitle("Job log");
    overview.refresh();
    runs.load();
  }
  return Boolean(match);
}

function navigate(path) {
  const target = new URL(path, document.baseURI);
  if (target.href !== location.href) history.pushState({}, "", target);
  route();
  window.scrollTo(0, 0);
}

/** Start showing data: the event stream and the view the address asks for. */
function begin() {
  running = true;
  $("views").hidden = signin.formShown();
  connect();
  if (route()) overview.refresh();  // the header's facts, which the overview loads itself
}

/** Stop, and drop every piece of data the page holds. */
function end() {
  if (!running) return;
  running = false;
  disconnect();
  runView.forget();
  overview.clear();
  runs.clear();
  setTitle("Job log");
  $("views").hidden = true;
}

/** Follow what the service says about the caller: the header, the buttons, data or the form. */
function applyState(state, reason) {
  signin.showWho(state);
  $("facts").hidden = !canView(state);
  $("run-now").hidden = !isAdmin(state);
  runView.showActions();
  if (!canView(state)) {
    const wasRunning = running;
    end();
    const note = wasRunning ? NOTES[reason] ?? "" : "";
    if (wasRunning || !signin.formShown()) signin.showForm({ note });
    return;
  }
  if (reason === "signed-in") signin.hideForm();
  if (!running) begin();
}

async function unauthorized({ action }) {
  try {
    const state = await recheck("expired");
    if (action && canView(state) && !isAdmin(state)) signin.showForm({ note: "Sign in as admin to do this." });
  } catch {
    // The service is away; the next request tells again.
  }
}

async function stillAllowed() {
  try {
    return canView(await recheck("expired"));
  } catch {
    return true;  // the service is away: try the stream again later
  }
}

async function signInWithLink(token) {
  let problem;
  try {
    await signIn(token);
    return;
  } catch (error) {
    problem = error instanceof ApiError ? error.message : "The service cannot be reached; try again.";
  }
  if (await ask()) signin.showForm({ error: problem });
}

/** Who is looking; false (and another try in 5 s) while the service cannot be reached. */
async function ask() {
  try {
    await whoAmI("start");
    say("");
    return true;
  } catch {
    say("The service cannot be reached; trying again…", "error");
    setTimeout(ask, 5000);
    return false;
  }
}

const link = takeSignInLink();  // first of all: out of the address bar at once

document.addEventListener("click", (event) => {
  const target = event.target.closest("a[data-link], #home, #back");
  if (!target || event.ctrlKey || event.metaKey || event.shiftKey || event.button !== 0) return;
  event.preventDefault();
  navigate(target.getAttribute("href"));
});
window.addEventListener("popstate", route);
window.addEventListener("hashchange", () => {
  const token = takeSignInLink();  // a sign-in link opened in this tab
  if (token) signInWithLink(token);
});

whenUnauthorized(unauthorized);
whenClosed(stillAllowed);
onChange(applyState);
signin.start();
overview.start(navigate);
overview.wireChart(navigate);
runs.start(navigate);
runView.start();
if (link) signInWithLink(link);
else ask();
