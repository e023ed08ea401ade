// The all-runs event stream, and the connection state shown in the header.

import { $ } from "./dom.js";

const listeners = new Set();
let source = null;

export function onJobLog(listener) {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

function show(state) {
  const box = $("connection");
  if (box.dataset.state === state) return;
  box.dataset.state = state;
  box.textContent = state;
}

export function connect() {
  source = new EventSource("api/events");
  source.addEventListener("open", () => show("live"));
  source.addEventListener("error", () => {
    show(source.readyState === EventSource.CLOSED ? "offline" : "reconnecting");
    if (source.readyState === EventSource.CLOSED) setTimeout(connect, 5000);
  });
  source.addEventListener("job_log", (event) => {
    const log = JSON.parse(event.data);
    for (const listener of listeners) listener(log);
  });
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
