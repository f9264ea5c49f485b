/**
 * The Admin page (#/admin), for the admin token: capacity (GET /admin/capacity), the queue
 * (pending tasks, and stuck ones from GET /admin/tasks/stuck with why), user tokens (create,
 * showing the secret once; list; revoke: /admin/tokens) and resets
 * (POST /admin/tasks/{id}/reset), each after a confirmation.
 *
 * Without the admin token it shows a form for it. Signing in there signs the whole tab in (the
 * admin token is accepted everywhere), as the sign-in view does; a user token is not let in.
 */

import { api } from "./api.js";
import { auth } from "./auth.js";
import { byId, fill, h, setText } from "./dom.js";
import { firstLine, formatBytes, formatTime, shortId, taskHref } from "./format.js";
import { tokenForm } from "./signin.js";
import { showNotice } from "./taskpage.js";

const POLL_MS = 2000;

export class AdminView {
  constructor() {
    this.form = byId("token-form");
    this.note = byId("admin-token-note");
    this.area = byId("admin-area");
    this.controller = byId("controller-state");
    this.message = byId("admin-message");
    this.capacity = byId("admin-capacity");
    this.pending = byId("pending-list");
    this.stuck = byId("stuck-list");
    this.tokenList = byId("token-list");
    this.created = byId("new-token");
    this.timer = null;
    this.visible = false;
    this.shown = new Map(); // element -> the data it last showed, as JSON
    tokenForm(this.form, byId("admin-token"), {
      check: async (token) => {
        await api.tryAdminToken(token);
        return "admin";
      },
      showError: (text) => (text ? showNotice(this.message, text, true)
        : (this.message.hidden = true)),
    });
    byId("new-token-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.createToken();
    });
    byId("new-token-done").addEventListener("click", () => this.hideSecret());
    byId("reset-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const id = byId("reset-id").value.trim().toLowerCase();
      if (id) this.reset(id, byId("reset-to").value);
    });
  }

  show() {
    this.visible = true;
    this.render();
    clearInterval(this.timer);
    this.timer = setInterval(() => this.isAdmin() && this.load(), POLL_MS);
  }

  hide() {
    this.visible = false;
    clearInterval(this.timer);
    this.hideSecret();
  }

  isAdmin() {
    return Boolean(auth.token) && auth.kind !== "user";
  }

  /** Called on show and whenever the tab signs in or out. */
  render() {
    if (!this.visible) return;
    const admin = this.isAdmin();
    this.form.hidden = admin;
    this.area.hidden = !admin;
    setText(this.note, auth.token
      ? "This tab is signed in with a user token; this page needs the admin token. Signing "
        + "in with it here replaces the user token in this tab."
      : "This page needs the admin token. Signing in with it here signs this tab in "
        + "everywhere: the admin token is accepted by every endpoint.");
    if (admin) {
      this.shown.clear();
      this.load();
      this.loadTokens();
    }
  }

  async load() {
    const [stuck, capacity, pending] = await Promise.allSettled([
      api.stuck(), api.adminCapacity(), api.listTasks({ phase: "Pending", limit: 500 })]);
    const refused = [stuck, capacity].find((result) => [401, 403].includes(result.reason?.status));
    if (refused) {
      this.refused(refused.reason);
      return;
    }
    if (stuck.status === "fulfilled") {
      const { controller } = stuck.value;
      setText(this.controller, controller.ok
        ? `Controller running (last pass ${formatTime(controller.last_pass_at)}).`
        : `No controller pass since ${formatTime(controller.last_pass_at)}.`);
      this.controller.dataset.ok = String(controller.ok);
      this.update(this.stuck, stuck.value.items, (items) => this.stuckList(items));
    } else {
      setText(this.controller, `Could not read stuck tasks: ${stuck.reason.message}`);
    }
    this.update(this.capacity, capacity.status === "fulfilled" ? capacity.value
      : { error: capacity.reason.message }, (value) => capacityList(value));
    if (pending.status === "fulfilled") {
      this.update(this.pending, pending.value, (page) => pendingList(page));
    }
  }

  /** The tab's token is not (or no longer) the admin's: show the form. */
  refused(error) {
    this.form.hidden = false;
    this.area.hidden = true;
    showNotice(this.message, `The admin endpoints refused this tab's token (HTTP `
      + `${error.status}): ${error.message}`, true);
  }

  /** Polled: leave an element alone while its data is unchanged, so focus and screen
   * readers are not disturbed. */
  update(el, data, build) {
    const key = JSON.stringify(data);
    if (this.shown.get(el) === key) return;
    this.shown.set(el, key);
    // Rebuilt: keep focus on the button a keyboard user was on.
    const focused = document.activeElement?.dataset ?? {};
    fill(el, build(data));
    if (focused.action) {
      el.querySelector(`button[data-action="${focused.action}"][data-key="`
        + `${CSS.escape(focused.key ?? "")}"]`)?.focus();
    }
  }

  stuckList(items) {
    if (!items.length) return h("p", { class: "muted" }, "No stuck tasks.");
    return h("ul", { class: "stuck" }, items.map((item) => this.stuckItem(item)));
  }

  stuckItem(item) {
    const button = (action, to, label, extra) => h("button", {
      type: "button", class: `button ${extra}`, dataset: { action, key: item.task_id },
      onclick: () => this.reset(item.task_id, to),
    }, label);
    return h("li", { class: "stuck-item", dataset: { taskId: item.task_id } },
      h("div", { class: "stuck-head" },
        h("a", { href: taskHref(item.task_id), class: "mono" }, shortId(item.task_id)),
        " ", h("span", { class: "phase", dataset: { phase: item.phase } }, item.phase),
        item.since ? h("span", { class: "muted" }, ` since ${formatTime(item.since)}`) : null),
      h("p", { class: "why" }, item.why),
      h("div", { class: "actions" },
        // A Pending task cannot be requeued (409): it is in the queue already.
        item.phase === "Pending" ? null : button("requeue", "Pending", "Reset to Pending", ""),
        button("fail", "Failed", "Fail", "danger")));
  }

  async reset(id, to) {
    const what = to === "Pending" ? "reset to Pending (it runs again as a new attempt)"
      : "failed (its container is stopped)";
    if (!window.confirm(`Task ${shortId(id)} will be ${what}. Continue?`)) return;
    try {
      await api.reset(id, to);
      showNotice(this.message, `Reset of ${shortId(id)} to ${to} requested; the controller `
        + "carries it out.", false);
    } catch (error) {
      showNotice(this.message, `Reset of ${shortId(id)} refused: ${error.message}`, true);
    }
    this.load();
  }

  async loadTokens() {
    let tokens;
    try {
      tokens = (await api.tokens()).items;
    } catch (error) {
      fill(this.tokenList, h("p", { class: "notice error" },
        `Could not list tokens: ${error.message}`));
      this.shown.delete(this.tokenList);
      return;
    }
    this.update(this.tokenList, tokens, (items) => this.tokenTable(items));
  }

  tokenTable(items) {
    if (!items.length) {
      return h("p", { class: "muted" }, "No user tokens yet.");
    }
    const rows = [...items].reverse().map((token) => h("tr", { dataset: { tokenId: token.id } },
      h("td", {}, token.name),
      h("td", { class: "mono" }, token.id),
      h("td", { class: "wide" }, formatTime(token.created_at)),
      h("td", { class: "state" }, token.revoked_at ? `revoked ${formatTime(token.revoked_at)}`
        : "active"),
      h("td", {}, token.revoked_at ? null : h("button", {
        type: "button", class: "button danger", dataset: { action: "revoke", key: token.id },
        onclick: () => this.revokeToken(token),
      }, "Revoke"))));
    return h("div", { class: "table-wrap" }, h("table", { class: "tasks tokens" },
      h("caption", { class: "visually-hidden" }, "User tokens, newest first"),
      h("thead", {}, h("tr", {}, ["Name", "Id", "Created", "State", ""].map(
        (title, index) => h("th", { scope: "col", class: index === 2 ? "wide" : null }, title)))),
      h("tbody", {}, rows)));
  }

  async createToken() {
    const input = byId("new-token-name");
    const name = input.value.trim();
    try {
      const token = await api.createToken(name);
      input.value = "";
      this.message.hidden = true;
      setText(byId("new-token-label"), `The token for ${token.name} (${token.id}):`);
      const secret = byId("new-token-secret");
      secret.value = token.token;
      this.created.hidden = false;
      secret.focus();
      secret.select();
    } catch (error) {
      showNotice(this.message, `Token not created: ${error.message}`, true);
    }
    this.loadTokens();
  }

  hideSecret() {
    byId("new-token-secret").value = "";
    this.created.hidden = true;
  }

  async revokeToken(token) {
    if (!window.confirm(`Revoke the token ${token.name} (${token.id})? It is refused from `
      + "now on, and its open streams end.")) return;
    try {
      await api.revokeToken(token.id);
      showNotice(this.message, `Token ${token.name} (${token.id}) revoked.`, false);
    } catch (error) {
      showNotice(this.message, `Could not revoke ${token.id}: ${error.message}`, true);
    }
    this.loadTokens();
  }
}

/** GET /admin/capacity as a short list: held of allocatable, per resource. */
function capacityList(capacity) {
  if (capacity.error) return h("p", { class: "muted" }, `Capacity unknown: ${capacity.error}`);
  const { cpu, gpu, ram, storage } = capacity;
  const rows = [
    ["CPU cores", `${cpu.allocated} of ${cpu.allocatable} held, ${cpu.free} free`],
    ["GPUs", gpu.allocatable ? `${gpu.allocated} of ${gpu.allocatable} held, ${gpu.free} free`
      : "none on this host"],
    ["RAM", `${formatBytes(ram.allocated)} of ${formatBytes(ram.allocatable)} allocated, `
      + `${formatBytes(ram.free)} free`],
    ["Storage", `${formatBytes(storage.allocated)} of ${formatBytes(storage.allocatable)} `
      + `allocated, ${formatBytes(storage.free)} free`],
    ["Reported", formatTime(capacity.reported_at)],
  ];
  return h("dl", { class: "spec" }, rows.map(([term, value]) =>
    [h("dt", {}, term), h("dd", { dataset: { resource: term } }, value)]));
}

/** The queue, head first (GET /tasks lists newest first). */
function pendingList(page) {
  if (!page.items.length) return h("p", { class: "muted" }, "No task is waiting.");
  const items = [...page.items].reverse();
  return [
    h("p", { class: "muted" }, `${items.length}${page.next_cursor ? "+" : ""} pending, `
      + "head first"),
    h("ol", { class: "queue-list" }, items.map((task) => h("li",
      { dataset: { taskId: task.id } },
      h("a", { href: taskHref(task.id), class: "mono" }, shortId(task.id)), " ",
      h("code", { class: "first-line" }, firstLine(task.spec.code)), " ",
      h("span", { class: "muted" }, task.status.message
        ? `${task.status.reason}: ${task.status.message}` : task.status.reason)))),
  ];
}
