// The all-runs event stream, and the connection state shown in the header.

import { $ } from "./dom.js";

const listeners = new Set();
let source = null;
let stillAllowed = async () => true;

export function onJobLog(listener) {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

/** ``check()`` says (true/false) whether a stream the browser gave up on may be opened again. */
export function whenClosed(check) {
  stillAllowed = check;
}

function show(state) {
  const box = $("connection");
  if (box.dataset.state === state) return;
  box.dataset.state = state;
  box.textContent = state;
}

export function connect() {
  const mine = new EventSource("api/events");
  source = mine;
  mine.addEventListener("open", () => show("live"));
  mine.addEventListener("error", () => {
    if (mine.readyState !== EventSource.CLOSED) {
      show("reconnecting");
      return;
    }
    show("offline");
    if (mine === source) reopen(mine);
  });
  mine.addEventListener("job_log", (event) => {
    const log = JSON.parse(event.data);
    for (const listener of listeners) listener(log);
  });
}

async function reopen(closed) {
  // The browser gives up on a stream after any answer but 200: a restart's 502 looks the same
  // as the 401 of a session that has ended, so who the caller is comes first.
  if (!(await stillAllowed()) || closed !== source) return;
  setTimeout(() => {
    if (closed === source) connect();
  }, 5000);
}

export function disconnect() {
  if (source) source.close();
  source = null;
  show("connecting");
}

window.addEventListener("offline", () => show("offline"));
window.addEventListener("online", () => {
  show(source && source.readyState === EventSource.OPEN ? "live" : "reconnecting");
});

/** Reflect another stream's state too (the run view's), when it is the one in trouble. */
export function reflect(stream) {
  stream.addEventListener("error", () => {
    if (stream.readyState !== EventSource.CLOSED) show("reconnecting");
  });
  stream.addEventListener("open", () => {
    if (source && source.readyState === EventSource.OPEN) show("live");
  });
}
