/**
 * The tab's token: a user token or the admin token, pasted into a sign-in form and kept in
 * sessionStorage, so it lives as long as this tab and never reaches localStorage, a cookie or a
 * URL. js/api.js sends it with every request and stream, and tells this object about each 401
 * and each success.
 *
 * `required` is true from a 401 until a request is let in again (a sign-in, or open mode coming
 * back). Every change of the token or of `required` is a "change" event, whose detail says
 * whether the token changed ({tokenChanged}).
 */

const KEY = "taskyard.token";
const KIND_KEY = "taskyard.tokenKind"; // "admin" or "user", to say so in the header

class Auth extends EventTarget {
  constructor() {
    super();
    this.required = false;
    this.message = ""; // why the tab's token was dropped, for the sign-in form
  }

  get token() {
    return sessionStorage.getItem(KEY);
  }

  get kind() {
    return this.token ? sessionStorage.getItem(KIND_KEY) : null;
  }

  signIn(token, kind) {
    sessionStorage.setItem(KEY, token);
    sessionStorage.setItem(KIND_KEY, kind);
    this.required = false;
    this.message = "";
    this.emit(true);
  }

  signOut() {
    this.forget();
    this.message = "";
    this.emit(true);
  }

  forget() {
    sessionStorage.removeItem(KEY);
    sessionStorage.removeItem(KIND_KEY);
  }

  /** The API answered 401 to a request sent with `sent` (null: none). */
  refused(sent, message) {
    // An answer to a request sent before a sign-in or sign-out says nothing about now.
    if ((sent ?? null) !== this.token) return;
    if (!sent && this.required) return; // said already
    if (sent) {
      // Unknown or revoked: it will not work again, and open mode may be back without it.
      this.forget();
      this.message = `Your token was refused (${message}). Sign in again.`;
    }
    this.required = true;
    this.emit(Boolean(sent));
  }

  /** A request sent with `sent` was let in: whatever asked for a token is over. */
  accepted(sent) {
    if (!this.required || (sent ?? null) !== this.token) return;
    this.required = false;
    this.message = "";
    this.emit(false);
  }

  emit(tokenChanged) {
    this.dispatchEvent(new CustomEvent("change", { detail: { tokenChanged } }));
  }
}

export const auth = new Auth();
