// The page: an overview with the list of runs, and a view of one run at runs/<name>.
// Plain ES modules, no build step; every URL is relative to the page's <base>.

import { $ } from "./dom.js";
import { connect } from "./live.js";
import * as overview from "./overview.js";
import * as runs from "./runs.js";
import * as runView from "./runview.js";

const base = new URL(document.baseURI);

function route() {
  const here = new URL(location.href);
  const path = here.pathname.startsWith(base.pathname) ? here.pathname.slice(base.pathname.length) : "";
  const match = /^runs\/(\d{14}(?:_\d+)?)$/.exec(path);
  $("overview-view").hidden = Boolean(match);
  $("run-view").hidden = !match;
  if (match) {
    runView.open(match[1]);
  } else {
    runView.close();
    document.title = "Job log";
    overview.refresh();
    runs.load();
  }
}

function navigate(path) {
  const target = new URL(path, document.baseURI);
  if (target.href !== location.href) history.pushState({}, "", target);
  route();
  window.scrollTo(0, 0);
}

document.addEventListener("click", (event) => {
  const link = event.target.closest("a[data-link], #home, #back");
  if (!link || event.ctrlKey || event.metaKey || event.shiftKey || event.button !== 0) return;
  event.preventDefault();
  navigate(link.getAttribute("href"));
});
window.addEventListener("popstate", route);

connect();
overview.start(navigate);
overview.wireStrip(navigate);
runs.start(navigate);
runView.start();
route();
