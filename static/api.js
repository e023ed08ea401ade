// Talking to the service. Every URL is relative to the page's <base>, so the page works
// behind a reverse proxy under any sub-path. Credentials travel only in the session cookie
// the browser sends by itself (same origin): the page never holds a token.

import { say } from "./dom.js";

let unauthorized = () => {};

/** Who to tell when the service answers 401: the caller's session has ended (or never was). */
export function whenUnauthorized(handler) {
  unauthorized = handler;
}

export async function getJSON(path) {
  const response = await fetch(path, { headers: { Accept: "application/json" } });
  if (response.status === 401) unauthorized({ action: false });
  if (!response.ok) throw new ApiError(response.status, await errorText(response));
  return response.json();
}

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function errorText(response) {
  try {
    const body = await response.json();
    return body.error || response.statusText;
  } catch {
    return response.statusText;
  }
}

/** POST an action (run now, cancel): it needs the admin role. */
export async function post(path) {
  const response = await fetch(path, { method: "POST", headers: { Accept: "application/json" } });
  const body = await response.json().catch(() => ({}));
  if (response.ok) return body;
  if (response.status === 401) unauthorized({ action: true });
  throw new ApiError(response.status, explain(response.status, body));
}

function explain(status, body) {
  const detail = body.error ? ` (${body.error})` : "";
  switch (status) {
    case 401: return "Sign in as admin to do this.";
    case 403: return `Not allowed${detail}.`;
    case 409: return `Not possible right now${detail}.`;
    default: return `The service answered ${status}${detail}.`;
  }
}

export function report(error) {
  // A 401 brings up the sign-in form, which says what to do; a message would only repeat it.
  if (error instanceof ApiError && error.status === 401) return;
  say(error instanceof ApiError ? error.message : `Something went wrong: ${error}`, "error");
}
