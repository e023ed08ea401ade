// Who is looking at the page: the caller as the service sees it (GET api/session), signing in
// with a token for a session cookie, signing out. A token goes to the service once, in a POST
// body; the page keeps only the answer (role, how it was proven, the proxy's user name).

import { ApiError, getJSON } from "./api.js";

const NOBODY = { role: null, via: null, user: null, expires_at: null };
const LINK = "#signin=";
const listeners = new Set();
let current = NOBODY;
let checking = null;

/** The caller as the service last said: ``{role, via, user, expires_at}`` (role null: nobody). */
export const caller = () => current;
export const canView = (state = current) => state.role === "viewer" || state.role === "admin";
export const isAdmin = (state = current) => state.role === "admin";

/** Call ``listener(state, reason)`` each time the service says who the caller is. */
export function onChange(listener) {
  listeners.add(listener);
}

function set(answer, reason) {
  const { role, via, user, expires_at: expiresAt } = answer;
  current = { role: role ?? null, via: via ?? null, user: user ?? null, expires_at: expiresAt ?? null };
  for (const listener of listeners) listener(current, reason);
  return current;
}

/** Ask the service who the caller is now. */
export async function whoAmI(reason) {
  return set(await getJSON("api/session"), reason);
}

/** Ask again after a 401 or a closed stream; answers that arrive together share one question. */
export function recheck(reason) {
  checking ??= whoAmI(reason).finally(() => { checking = null; });
  return checking;
}

export async function signIn(token) {
  const response = await fetch("api/session", {
    method: "POST",
    headers: { Accept: "application/json", "Content-Type": "application/json" },
    body: JSON.stringify({ token }),
  });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new ApiError(response.status, refusal(response.status, body));
  return set(body, "signed-in");
}

function refusal(status, body) {
  // Never the token itself: only what the service says about it.
  if (status === 403) return "That token is not valid.";
  if (status === 400 && body.error) return `That is not a token: ${body.error}.`;
  return `The service answered ${status}; try again.`;
}

export async function signOut() {
  const response = await fetch("api/session", { method: "DELETE" });
  if (!response.ok) throw new ApiError(response.status, `Signing out failed: the service answered ${response.status}.`);
  return whoAmI("signed-out");
}

/**
 * The token of a sign-in link (``#signin=<token>``), taken out of the address bar before anything
 * else happens, so it stays in neither the history nor a bookmark nor a shared link.
 */
export function takeSignInLink() {
  if (!location.hash.startsWith(LINK)) return null;
  const encoded = location.hash.slice(LINK.length);
  history.replaceState(history.state, "", `${location.pathname}${location.search}`);
  try {
    return decodeURIComponent(encoded).trim() || null;
  } catch {
    return null;  // not a link the service printed
  }
}
