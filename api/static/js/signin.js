/**
 * Signing in: the sign-in view that replaces the page while the API asks for a token, and the
 * header's "signed in" line with its Sign out button. A pasted token is tried first
 * (GET /tasks) and kept only when the API lets it in; a wrong one is never stored. Whether it
 * is the admin token (GET /admin/tasks/stuck answers 200, not 403) is only said in the header:
 * the admin token is accepted everywhere.
 */

import { api } from "./api.js";
import { auth } from "./auth.js";
import { byId, setText } from "./dom.js";

/**
 * Wire a token form: `check(token)` resolves to the token's kind ("admin" or "user") or
 * rejects with the API's answer, which `showError` then shows; on success the tab signs in.
 */
export function tokenForm(form, input, { check, showError }) {
  const button = form.querySelector("button[type=submit]");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const token = input.value.trim();
    if (!token) {
      showError("Paste a token first.");
      input.focus();
      return;
    }
    button.disabled = true;
    try {
      const kind = await check(token);
      input.value = "";
      showError(null);
      auth.signIn(token, kind);
    } catch (error) {
      showError(error.status
        ? `This token was refused (HTTP ${error.status}): ${error.message}`
        : error.message);
      input.select();
    } finally {
      button.disabled = false;
    }
  });
}

/** "admin" or "user": what the admin endpoints say of a token the task endpoints let in. */
export async function kindOf(token) {
  try {
    await api.tryAdminToken(token);
    return "admin";
  } catch (error) {
    if (error.status === 403) return "user";
    throw error;
  }
}

export class SignIn {
  constructor() {
    this.view = byId("view-signin");
    this.message = byId("signin-message");
    this.error = byId("signin-error");
    this.account = byId("account");
    this.accountText = byId("account-text");
    const input = byId("signin-token");
    tokenForm(byId("signin-form"), input, {
      check: async (token) => {
        await api.tryToken(token);
        return kindOf(token);
      },
      showError: (text) => {
        this.error.hidden = !text;
        setText(this.error, text ?? "");
      },
    });
    byId("sign-out").addEventListener("click", () => auth.signOut());
  }

  /** Show or hide the sign-in view and the header's account line, as `auth` now says. */
  render() {
    this.view.hidden = !auth.required;
    this.message.hidden = !auth.message;
    setText(this.message, auth.message);
    this.account.hidden = !auth.token;
    setText(this.accountText, auth.kind === "admin" ? "Signed in as admin"
      : "Signed in with a user token");
  }
}
