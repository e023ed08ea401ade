// The sign-in form, and the part of the header that says who is signed in, with its buttons.

import { ApiError, report } from "./api.js";
import { $, say } from "./dom.js";
import { canView, caller, signIn, signOut } from "./session.js";

const LEAD = {
  view: "The job logs are shown to those who sign in. Enter your token, or open the sign-in "
    + "link the service printed when it started.",
  admin: "Sign in with the admin token to start and cancel runs.",
};

export function start() {
  $("signin-form").addEventListener("submit", submit);
  $("signin-cancel").addEventListener("click", hideForm);
  $("sign-in").addEventListener("click", () => showForm());
  $("sign-out").addEventListener("click", leave);
}

/** Show the form in place of the views; a viewer may cancel back to the read-only page. */
export function showForm({ note = "", error = "" } = {}) {
  const optional = canView();
  $("signin-lead").textContent = optional ? LEAD.admin : LEAD.view;
  text($("signin-note"), note);
  text($("signin-error"), error);
  $("signin-cancel").hidden = !optional;
  $("sign-in").hidden = true;  // the form is open already
  $("views").hidden = true;
  $("signin-view").hidden = false;
  say("");
  $("signin-token").focus();
}

export function hideForm() {
  $("signin-token").value = "";
  $("signin-view").hidden = true;
  $("views").hidden = !canView();
  showWho(caller());
}

export const formShown = () => !$("signin-view").hidden;

function text(box, words) {
  box.textContent = words;
  box.hidden = !words;
}

async function submit(event) {
  event.preventDefault();
  const input = $("signin-token");
  const token = input.value.trim();
  input.value = "";  // not kept in the page a moment longer than needed, whatever the answer
  if (!token) {
    text($("signin-error"), "Enter a token.");
    input.focus();
    return;
  }
  text($("signin-error"), "");
  $("signin-submit").disabled = true;
  try {
    await signIn(token);
  } catch (error) {
    text($("signin-error"), error instanceof ApiError ? error.message : "The service cannot be reached; try again.");
    input.focus();
  } finally {
    $("signin-submit").disabled = false;
  }
}

async function leave() {
  $("sign-out").disabled = true;
  try {
    await signOut();
  } catch (error) {
    report(error);
  } finally {
    $("sign-out").disabled = false;
  }
}

/** The header's "signed in as …", Sign in for a guest, Sign out for a session of this browser. */
export function showWho(state) {
  const who = $("who");
  who.hidden = state.role === null;
  if (who.hidden) return;
  const guest = state.via === "anonymous";
  $("who-label").textContent = guest ? "Viewing as" : "Signed in as";
  const name = $("who-name");
  name.textContent = guest ? "guest (view only)" : state.user ? `${state.user} (${state.role})` : state.role;
  name.dataset.role = state.role;
  $("sign-in").hidden = !guest;
  // A proxy's sign-in is the proxy's to end; a bearer token is not the browser's either.
  $("sign-out").hidden = state.via !== "session";
}
