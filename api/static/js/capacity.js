/**
 * Capacity at a glance, from GET /capacity: one cell per CPU core and per GPU, coloured by
 * the task that holds it; RAM and storage bars of allocated against allocatable; and the
 * queue, from GET /tasks?phase=Pending, with the reason its head waits.
 *
 * Cells are buttons: hovering shows the holder in a tooltip, and clicking (or tapping, on a
 * phone, where there is no hover) names it below the grid with a link to its page. A user's
 * token sees other users' tasks as held slots without an id (null): grey, and unnamed.
 */

import { api } from "./api.js";
import { byId, fill, h, setText } from "./dom.js";
import { formatBytes, shortId, taskHref } from "./format.js";

const POLL_MS = 3000;
const QUEUE_PAGE = 500;
const HINT = "Select a cell to see which task holds it.";
// Distinct colours, each dark enough for white digits on it. A task keeps its colour for as
// long as it holds anything; tasks holding at the same time get different ones (up to ten).
const PALETTE = ["#2457c5", "#c2410c", "#15803d", "#7e22ce", "#be123c", "#0e7490", "#a16207",
  "#4338ca", "#9d174d", "#3f6212"];
const OTHERS = "#57534e"; // slots held by other users' tasks, whose ids are not shown

export class CapacityView {
  constructor(store) {
    this.store = store;
    this.root = byId("capacity");
    this.built = null; // the ids the cells were built for; rebuilt when they change
    this.selected = null; // {kind, slot} of the cell last clicked
    this.timer = null;
    this.colours = new Map(); // task id -> index into PALETTE, while it holds something
    store.addEventListener("change", () => this.soon());
  }

  start() {
    this.refresh();
    setInterval(() => this.refresh(), POLL_MS);
  }

  /** Many transitions can land at once: read capacity once for all of them. */
  soon() {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.refresh(), 150);
  }

  async refresh() {
    let capacity;
    let queue;
    try {
      [capacity, queue] = await Promise.all([
        api.capacity(), api.listTasks({ phase: "Pending", limit: QUEUE_PAGE })]);
    } catch (error) {
      // Keep the last picture on screen during a blip, and say that it is old.
      if (this.built) setText(this.parts.detail, `Not updated: ${error.message}`);
      else fill(this.root, h("p", { class: "muted" }, error.status === 401
        ? "Sign in to see capacity." : `Capacity unknown: ${error.message}`));
      return;
    }
    this.render(capacity, queue);
    // A waiting task's reason and message change without a transition (Created becomes
    // Unschedulable): the queue read keeps the table's copy of them current too.
    for (const task of queue.items) this.store.upsert(task);
  }

  render(capacity, queue) {
    this.assignColours(capacity.holders);
    const key = JSON.stringify([capacity.cpu.ids, capacity.gpu.ids]);
    if (this.built !== key) this.build(capacity, key);
    this.updateCells("cpu", capacity.cpu.ids, capacity.holders.cpus);
    this.updateCells("gpu", capacity.gpu.ids, capacity.holders.gpus);
    setText(this.parts.cpuCount, `${capacity.cpu.allocated} of ${capacity.cpu.allocatable} held`);
    setText(this.parts.gpuCount, `${capacity.gpu.allocated} of ${capacity.gpu.allocatable} held`);
    this.updateBar(this.parts.ram, capacity.ram);
    this.updateBar(this.parts.storage, capacity.storage);
    this.updateQueue(queue);
    this.updateLegend(capacity.holders);
    this.showSelected();
  }

  build(capacity, key) {
    this.built = key;
    this.cells = { cpu: new Map(), gpu: new Map() };
    const cpuGroup = this.group("cpu", "CPU cores", capacity.cpu.ids);
    const gpuGroup = capacity.gpu.ids.length
      ? this.group("gpu", "GPUs", capacity.gpu.ids, capacity.gpu.names)
      : h("div", { class: "cap-group" }, h("h3", {}, "GPUs"),
        h("p", { class: "muted" }, "none on this host"));
    this.parts = {
      cpuCount: cpuGroup.querySelector(".count"),
      gpuCount: gpuGroup.querySelector(".count") ?? h("span"),
      ram: this.bar("RAM"),
      storage: this.bar("Storage"),
      queue: h("p", { class: "queue", role: "status", "aria-live": "polite" }),
      legend: h("ul", { class: "legend", "aria-label": "Tasks holding cores or GPUs" }),
      detail: h("p", { class: "cap-detail", "aria-live": "polite" }, HINT),
    };
    fill(this.root,
      h("div", { class: "cap-slots" }, cpuGroup, gpuGroup),
      this.parts.detail,
      this.parts.legend,
      h("div", { class: "cap-bars" }, this.parts.ram.row, this.parts.storage.row),
      this.parts.queue);
  }

  group(kind, title, ids, names = []) {
    const cells = h("div", { class: "cells", role: "group", "aria-label": title });
    ids.forEach((slot, index) => {
      const cell = h("button", { type: "button", class: "cell",
        dataset: { kind, slot: String(slot) },
        onclick: () => this.select(kind, String(slot)) }, String(slot));
      cell.dataset.name = names[index] || "";
      this.cells[kind].set(String(slot), cell);
      cells.append(cell);
    });
    return h("div", { class: "cap-group" },
      h("h3", {}, title, " ", h("span", { class: "count muted" })), cells);
  }

  updateCells(kind, ids, holders) {
    for (const slot of ids.map(String)) {
      const cell = this.cells[kind].get(slot);
      const holding = holders[slot] ?? [];
      const known = holding.filter((id) => id !== null);
      cell.dataset.taskId = known.join(" ");
      cell.dataset.others = String(holding.length - known.length);
      cell.dataset.state = holding.length ? "held" : "free";
      cell.style.backgroundColor = !holding.length ? ""
        : known.length ? this.colour(known[0]) : OTHERS;
      const text = this.describe(kind, slot, holding);
      cell.title = text;
      cell.setAttribute("aria-label", text);
    }
  }

  assignColours(holders) {
    const holding = new Set(
      [...Object.values(holders.cpus), ...Object.values(holders.gpus)].flat()
        .filter((id) => id !== null));
    for (const id of this.colours.keys()) if (!holding.has(id)) this.colours.delete(id);
    for (const id of holding) {
      if (this.colours.has(id)) continue;
      const used = new Set(this.colours.values());
      const free = PALETTE.findIndex((_, index) => !used.has(index));
      this.colours.set(id, free >= 0 ? free : this.colours.size % PALETTE.length);
    }
  }

  colour(id) {
    return PALETTE[this.colours.get(id) ?? 0];
  }

  /** "CPU 0: held by task 1c144176 (Running)", "CPU 0: held by another user's task" or
   * "CPU 0: free". `holding` lists task ids, null for another user's task. */
  describe(kind, slot, holding) {
    const name = `${kind.toUpperCase()} ${slot}`;
    if (!holding.length) return `${name}: free`;
    const who = holding.map((id) => {
      if (id === null) return "another user's task";
      const phase = this.store.get(id)?.task.status.phase;
      return `task ${shortId(id)}${phase ? ` (${phase})` : ""}`;
    });
    return `${name}: held by ${who.join(", ")}`;
  }

  select(kind, slot) {
    this.selected = { kind, slot };
    this.showSelected();
  }

  showSelected() {
    const cell = this.selected && this.cells[this.selected.kind].get(this.selected.slot);
    if (!cell) {
      setText(this.parts.detail, HINT);
      return;
    }
    const holding = cell.dataset.taskId ? cell.dataset.taskId.split(" ") : [];
    const others = Array(Number(cell.dataset.others || 0)).fill(null);
    fill(this.parts.detail,
      this.describe(this.selected.kind, this.selected.slot, [...holding, ...others]),
      holding.map((id) => [" · ", h("a", { href: taskHref(id) }, `open ${shortId(id)}`)]));
  }

  updateLegend(holders) {
    const slots = new Map(); // task id -> ["CPU 0", ...]
    for (const [kind, byslot] of [["CPU", holders.cpus], ["GPU", holders.gpus]]) {
      for (const [slot, ids] of Object.entries(byslot)) {
        for (const id of ids.filter((held) => held !== null)) {
          slots.set(id, [...(slots.get(id) ?? []), `${kind} ${slot}`]);
        }
      }
    }
    fill(this.parts.legend, [...slots].map(([id, held]) => h("li", {},
      this.swatch(id), h("a", { href: taskHref(id), class: "mono" }, shortId(id)),
      ` ${held.join(", ")}`)));
  }

  bar(label) {
    const fillEl = h("div", { class: "fill" });
    const labelEl = h("span", { class: "bar-label" }, label);
    const meter = h("div", { class: "bar", role: "meter", "aria-valuemin": "0",
      "aria-label": label }, fillEl);
    const value = h("span", { class: "bar-value" });
    return { row: h("div", { class: "bar-row" }, labelEl, meter, value), meter, fillEl, value };
  }

  updateBar(bar, resource) {
    const share = resource.allocatable ? resource.allocated / resource.allocatable : 0;
    const text = `${formatBytes(resource.allocated)} of ${formatBytes(resource.allocatable)}`;
    bar.fillEl.style.width = `${Math.min(100, share * 100).toFixed(1)}%`;
    bar.meter.setAttribute("aria-valuemax", String(resource.allocatable));
    bar.meter.setAttribute("aria-valuenow", String(resource.allocated));
    bar.meter.setAttribute("aria-valuetext", `${text} allocated`);
    setText(bar.value, text);
  }

  swatch(id) {
    const el = h("span", { class: "swatch", "aria-hidden": "true" });
    el.style.backgroundColor = this.colour(id);
    return el;
  }

  /** GET /tasks lists newest first, so the head of the queue is the last item. */
  updateQueue(queue) {
    const count = queue.items.length;
    const more = queue.next_cursor ? "+" : "";
    if (count === 0) {
      fill(this.parts.queue, h("strong", {}, "Queue: empty"));
      return;
    }
    const head = queue.items[count - 1];
    const why = head.status.message || head.status.reason;
    fill(this.parts.queue, h("strong", {}, `Queue: ${count}${more} pending`),
      " · head ", h("a", { href: taskHref(head.id), class: "mono" }, shortId(head.id)),
      ` waits: ${why}`);
  }
}

