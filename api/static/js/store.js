/**
 * The page's copy of the tasks: listed once, then kept current by /watch transitions.
 *
 * Reads and transitions can arrive in any order (a GET may answer after a newer event), so
 * every change is ordered by the task's `resource_version`: older news never overwrites newer,
 * and a read of a version already known changes nothing (and tells no view to redraw).
 * Views listen for "change" events ({detail: {id, added}}) and "reset" (a relist).
 */

import { api } from "./api.js";
import { TERMINAL } from "./format.js";

export class TaskStore extends EventTarget {
  constructor() {
    super();
    this.entries = new Map(); // id -> {task, phaseSince (ms since epoch), partial}
    this.inFlight = new Map(); // id -> {again: bool}: one GET per task at a time
    this.nextCursor = null;
    this.listed = false;
  }

  /** Forget every task: the tab signed in or out, and the new caller may see other tasks. */
  clear() {
    this.entries.clear();
    this.nextCursor = null;
    this.listed = false;
    this.dispatchEvent(new CustomEvent("reset"));
  }

  get(id) {
    return this.entries.get(id);
  }

  /** Newest first, as GET /tasks lists them. */
  sorted() {
    return [...this.entries.values()].sort(
      (a, b) => b.task.created_at.localeCompare(a.task.created_at));
  }

  /** Put a task read from the API; ignored where we already know a newer version. */
  upsert(task) {
    const known = this.entries.has(task.id);
    if (this.put(task)) this.emit(task.id, !known);
  }

  /** Store a read task; false when it tells nothing new (an older or the same version). */
  put(task) {
    const known = this.entries.get(task.id);
    if (known) {
      const version = known.task.resource_version;
      // A version filled in from a transition alone still lacks the rest of the task.
      if (version > task.resource_version) return false;
      if (version === task.resource_version && !known.partial) return false;
    }
    const samePhase = known && known.task.status.phase === task.status.phase;
    const phaseSince = samePhase ? known.phaseSince : phaseStart(task);
    this.entries.set(task.id, { task, phaseSince, partial: false });
    return true;
  }

  /** Apply one /watch transition now, then read the task for what events do not carry. */
  applyTransition(event) {
    const known = this.entries.get(event.task_id);
    if (known && event.resource_version >= known.task.resource_version) {
      const status = { ...known.task.status, phase: event.to_phase, reason: event.reason,
        message: event.message };
      known.task = { ...known.task, resource_version: event.resource_version, status };
      known.phaseSince = Date.parse(event.at) || Date.now();
      known.partial = true;
      this.emit(event.task_id, false);
    }
    this.refresh(event.task_id);
  }

  /** Read one task again; several requests for one task while a read runs make one more. */
  async refresh(id) {
    const running = this.inFlight.get(id);
    if (running) {
      running.again = true;
      return;
    }
    const state = { again: false };
    this.inFlight.set(id, state);
    try {
      do {
        state.again = false;
        try {
          this.upsert(await api.getTask(id));
        } catch (error) {
          if (error.status !== 404) console.warn(`reading task ${id}:`, error.message);
        }
      } while (state.again);
    } finally {
      this.inFlight.delete(id);
    }
  }

  /**
   * List again: at start, and when transitions may have been missed (history compacted).
   * Tasks read meanwhile are kept where newer; active ones the list no longer covers are
   * read one by one, since their news may be among what was missed.
   */
  async relist() {
    const page = await api.listTasks({ limit: 100 });
    const listed = new Set(page.items.map((task) => task.id));
    for (const task of page.items) this.put(task);
    for (const [id, entry] of this.entries) {
      if (!listed.has(id) && !TERMINAL.has(entry.task.status.phase)) this.refresh(id);
    }
    if (!this.listed) this.nextCursor = page.next_cursor; // later pages stay as loaded
    this.listed = true;
    this.dispatchEvent(new CustomEvent("reset"));
  }

  /** Add the next page of older tasks (or the older tasks of one phase). */
  async loadMore({ phase } = {}) {
    const page = await api.listTasks({ limit: 100, phase,
      cursor: phase ? undefined : this.nextCursor });
    for (const task of page.items) this.upsert(task);
    if (!phase) this.nextCursor = page.next_cursor;
  }

  emit(id, added) {
    this.dispatchEvent(new CustomEvent("change", { detail: { id, added } }));
  }
}

/** When a listed task entered its phase, from the timestamps its status carries. */
export function phaseStart(task) {
  const status = task.status;
  const at = TERMINAL.has(status.phase) ? status.finished_at
    : { Scheduled: status.scheduled_at, Running: status.started_at }[status.phase];
  return Date.parse(at || task.created_at) || Date.now();
}
