// Talking to the service. Every URL is relative to the page's <base>, so the page works
// behind a reverse proxy under any sub-path.

import { $, say } from "./dom.js";

const TOKEN_KEY = "joblog.adminToken";

export async function getJSON(path) {
  const response = await fetch(path, { headers: { Accept: "application/json" } });
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

/** POST with the admin token (asked once on a 401, kept for this browser session only). */
export async function post(path) {
  for (let attempt = 0; attempt < 2; attempt += 1) {
    const token = sessionStorage.getItem(TOKEN_KEY);
    const headers = { Accept: "application/json" };
    if (token) headers.Authorization = `Bearer ${token}`;
    const response = await fetch(path, { method: "POST", headers });
    if (response.status === 401 && attempt === 0 && (await askToken())) continue;
    const body = await response.json().catch(() => ({}));
    if (response.ok) return body;
    if (response.status === 403 && token) sessionStorage.removeItem(TOKEN_KEY);
    throw new ApiError(response.status, explain(response.status, body));
  }
  throw new ApiError(401, "An admin token is needed to do this.");
}

function explain(status, body) {
  const detail = body.error ? ` (${body.error})` : "";
  switch (status) {
    case 401: return "An admin token is needed to do this.";
    case 403: return `Not allowed${detail}. Check the admin token.`;
    case 409: return `Not possible right now${detail}.`;
    default: return `The service answered ${status}${detail}.`;
  }
}

function askToken() {
  const dialog = $("token-dialog");
  const input = $("token-input");
  input.value = "";
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => {
      const ok = dialog.returnValue === "ok" && input.value.trim() !== "";
      if (ok) sessionStorage.setItem(TOKEN_KEY, input.value.trim());
      resolve(ok);
    }, { once: true });
    dialog.showModal();
  });
}

export function report(error) {
  say(error instanceof ApiError ? error.message : `Something went wrong: ${error}`, "error");
}
