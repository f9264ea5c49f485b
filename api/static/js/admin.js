/**
 * Admin mode: the admin token is typed once and kept in sessionStorage, so it lives only as
 * long as this browser tab and never reaches localStorage or a cookie. With it the page
 * lists stuck tasks (GET /admin/tasks/stuck) with the reason for each, and offers Reset to
 * Pending or Fail (POST /admin/tasks/{id}/reset) after a confirmation.
 */

import { api } from "./api.js";
import { byId, fill, h, setText } from "./dom.js";
import { formatTime, shortId, taskHref } from "./format.js";
import { showNotice } from "./taskpage.js";

const TOKEN_KEY = "taskyard.adminToken";
const POLL_MS = 2000;

export class AdminView {
  constructor() {
    this.form = byId("token-form");
    this.input = byId("admin-token");
    this.area = byId("admin-area");
    this.list = byId("stuck-list");
    this.controller = byId("controller-state");
    this.message = byId("admin-message");
    this.timer = null;
    this.shown = null; // the stuck items last rendered, as JSON
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.useToken(this.input.value.trim());
    });
    byId("forget-token").addEventListener("click", () => this.forget("Token forgotten."));
  }

  get token() {
    return sessionStorage.getItem(TOKEN_KEY);
  }

  show() {
    this.render();
    clearInterval(this.timer);
    this.timer = setInterval(() => this.token && this.load(), POLL_MS);
  }

  hide() {
    clearInterval(this.timer);
  }

  useToken(token) {
    if (!token) return;
    sessionStorage.setItem(TOKEN_KEY, token);
    this.input.value = "";
    this.message.hidden = true;
    this.render();
  }

  forget(text, isError) {
    sessionStorage.removeItem(TOKEN_KEY);
    this.shown = null;
    this.render();
    showNotice(this.message, text, Boolean(isError));
  }

  render() {
    const hasToken = Boolean(this.token);
    this.form.hidden = hasToken;
    this.area.hidden = !hasToken;
    if (hasToken) this.load();
  }

  async load() {
    let stuck;
    try {
      stuck = await api.stuck(this.token);
    } catch (error) {
      if (error.status === 401 || error.status === 403) {
        this.forget(`The token was refused (HTTP ${error.status}): ${error.message}`, true);
      } else {
        setText(this.controller, `Could not read stuck tasks: ${error.message}`);
      }
      return;
    }
    const controller = stuck.controller;
    setText(this.controller, controller.ok
      ? `Controller running (last pass ${formatTime(controller.last_pass_at)}).`
      : `No controller pass since ${formatTime(controller.last_pass_at)}.`);
    this.controller.dataset.ok = String(controller.ok);
    this.renderList(stuck.items);
  }

  renderList(items) {
    // Polled every two seconds: leave the list alone while nothing changed, so focus and
    // screen readers are not disturbed.
    const key = JSON.stringify(items);
    if (key === this.shown) return;
    this.shown = key;
    if (!items.length) {
      fill(this.list, h("p", { class: "muted" }, "No stuck tasks."));
      return;
    }
    // Rebuilt on each poll: keep focus on the button a keyboard user was on.
    const focused = document.activeElement?.dataset?.action;
    const focusedTask = document.activeElement?.dataset?.taskId;
    fill(this.list, h("ul", { class: "stuck" }, items.map((item) => this.item(item))));
    if (focused) {
      this.list.querySelector(
        `button[data-action="${focused}"][data-task-id="${CSS.escape(focusedTask)}"]`)?.focus();
    }
  }

  item(item) {
    const button = (action, to, label, extra) => h("button", {
      type: "button", class: `button ${extra}`, dataset: { action, taskId: item.task_id },
      onclick: () => this.reset(item.task_id, to),
    }, label);
    return h("li", { class: "stuck-item", dataset: { taskId: item.task_id } },
      h("div", { class: "stuck-head" },
        h("a", { href: taskHref(item.task_id), class: "mono" }, shortId(item.task_id)),
        " ", h("span", { class: "phase", dataset: { phase: item.phase } }, item.phase),
        item.since ? h("span", { class: "muted" }, ` since ${formatTime(item.since)}`) : null),
      h("p", { class: "why" }, item.why),
      h("div", { class: "actions" },
        button("requeue", "Pending", "Reset to Pending", ""),
        button("fail", "Failed", "Fail", "danger")));
  }

  async reset(id, to) {
    const what = to === "Pending" ? "reset to Pending (it runs again as a new attempt)"
      : "failed (its container is stopped)";
    if (!window.confirm(`Task ${shortId(id)} will be ${what}. Continue?`)) return;
    try {
      await api.reset(id, to, this.token);
      showNotice(this.message, `Reset of ${shortId(id)} to ${to} requested; the controller `
        + "carries it out.", false);
    } catch (error) {
      showNotice(this.message, `Reset of ${shortId(id)} refused: ${error.message}`, true);
    }
    this.load();
  }
}
