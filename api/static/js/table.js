/**
 * The live task table: one row per task, newest first, updated in place as transitions
 * arrive, so a person can keep their eye on a row while it moves. A row shows the first line
 * of the task's code, its runtime and, once it finished, how long it ran. Filtering by phase and searching
 * by id only hide rows; nothing is re-read from the server to filter.
 */

import { byId, fill, h, setText } from "./dom.js";
import {
  PHASES, firstLine, formatDuration, formatRunTime, formatTime, runTime, shortId, taskHref,
} from "./format.js";

export class TaskTable {
  constructor(store) {
    this.store = store;
    this.body = byId("task-rows");
    this.rows = new Map(); // id -> {row, cells}
    this.phase = byId("phase-filter");
    this.search = byId("id-search");
    this.summary = byId("table-summary");
    this.older = byId("load-older");
    for (const phase of PHASES) this.phase.append(h("option", { value: phase }, phase));
    this.phase.addEventListener("change", () => this.filterChanged());
    this.search.addEventListener("input", () => this.searchChanged());
    this.older.addEventListener("click", () => this.loadOlder());
    store.addEventListener("change", (event) => this.changed(event.detail.id));
    store.addEventListener("reset", () => this.rebuild());
  }

  rebuild() {
    this.rows.clear();
    fill(this.body);
    for (const entry of this.store.sorted()) this.place(entry);
    this.applyFilter();
  }

  changed(id) {
    const entry = this.store.get(id);
    if (!entry) return;
    const known = this.rows.get(id);
    if (known) this.update(known, entry);
    else this.place(entry);
    this.applyFilter();
  }

  /** Insert a new row where newest-first order puts it (usually at the top). */
  place(entry) {
    const view = this.createRow(entry.task.id);
    this.rows.set(entry.task.id, view);
    this.update(view, entry);
    const created = entry.task.created_at;
    const after = [...this.body.children].find((row) => row.dataset.created < created);
    this.body.insertBefore(view.row, after ?? null);
  }

  createRow(id) {
    const cells = {
      id: h("td", { class: "mono" }, h("a", { href: taskHref(id), title: id }, shortId(id))),
      phase: h("td", {}, h("span", { class: "phase" })),
      age: h("td", { class: "num" }),
      code: h("td", { class: "code-line wide" }, h("code")),
      runtime: h("td", { class: "wide mono runtime" }),
      ran: h("td", { class: "num run-time" }),
      resources: h("td", { class: "wide" }),
      created: h("td", { class: "wide" }),
      reason: h("td", { class: "wide reason" }),
    };
    const row = h("tr", { dataset: { taskId: id } }, Object.values(cells));
    return { row, cells };
  }

  update({ row, cells }, { task, phaseSince }) {
    const { phase, reason, message } = task.status;
    const badge = cells.phase.firstChild;
    setText(badge, phase);
    badge.dataset.phase = phase;
    row.dataset.phase = phase;
    row.dataset.created = task.created_at;
    row.dataset.phaseSince = String(phaseSince);
    const line = firstLine(task.spec.code);
    setText(cells.code.firstChild, line);
    cells.code.title = line;
    setText(cells.runtime, task.spec.runtime);
    const ran = runTime(task.status);
    setText(cells.ran, ran === null ? "—" : formatRunTime(ran));
    const res = task.spec.resources;
    setText(cells.resources, `${res.cpu} cpu · ${res.gpu} gpu · ${res.ram} · ${res.storage}`);
    setText(cells.created, formatTime(task.created_at));
    setText(cells.reason, reason);
    cells.reason.title = message || "";
    this.tickRow(row, cells);
  }

  /** Called every second: the time each visible row has spent in its phase. */
  tick() {
    for (const { row, cells } of this.rows.values()) if (!row.hidden) this.tickRow(row, cells);
  }

  tickRow(row, cells) {
    setText(cells.age, formatDuration(Date.now() - Number(row.dataset.phaseSince)));
  }

  filterChanged() {
    this.applyFilter();
    // Older tasks of that phase may not be loaded yet: fetch the newest page of them.
    if (this.phase.value) this.store.loadMore({ phase: this.phase.value }).catch(() => {});
  }

  searchChanged() {
    this.applyFilter();
    // A whole id pasted from elsewhere may be older than what is loaded: read it.
    const text = this.search.value.trim().toLowerCase();
    if (/^[0-9a-f]{32}$/.test(text) && !this.store.get(text)) this.store.refresh(text);
  }

  applyFilter() {
    const phase = this.phase.value;
    const text = this.search.value.trim().toLowerCase();
    let shown = 0;
    for (const [id, { row }] of this.rows) {
      const visible = (!phase || row.dataset.phase === phase) && (!text || id.includes(text));
      row.hidden = !visible;
      if (visible) shown += 1;
    }
    this.showSummary(shown);
    this.older.hidden = !this.store.nextCursor;
  }

  showSummary(shown) {
    const total = this.rows.size;
    if (total === 0) setText(this.summary, "No tasks yet. Submit one with New task.");
    else if (shown === total) setText(this.summary, `${total} task${total === 1 ? "" : "s"}`);
    else setText(this.summary, `${shown} of ${total} loaded tasks match`);
  }

  async loadOlder() {
    this.older.disabled = true;
    try {
      await this.store.loadMore();
    } finally {
      this.older.disabled = false;
      this.applyFilter();
    }
  }
}
