/**
 * A task's page (#/tasks/<id>): its status, result and output, the code highlighted, its
 * spec, and the timeline of its transitions. It follows the task live: the shared store
 * receives every transition from /watch, and this page re-reads the timeline when its task
 * changes. While the task is not terminal, its stdout and stderr stream in from
 * GET /tasks/{id}/logs (js/logs.js); once it is, the final output of GET /tasks/{id}, with its
 * truncated flags, replaces them; so do the run's usage and its collected files
 * (js/collected.js). Cancel sends DELETE /tasks/{id}; the controller then stops the task.
 */

import { api } from "./api.js";
import { CollectedFiles } from "./collected.js";
import { byId, fill, h, setText } from "./dom.js";
import {
  TERMINAL, formatDuration, formatFileSize, formatRunTime, formatSeconds, formatTime, runTime,
  shortId,
} from "./format.js";
import { highlight } from "./highlight.js";
import { LogFollower } from "./logs.js";

export class TaskPage {
  constructor(store) {
    this.store = store;
    this.root = byId("view-task");
    this.id = null;
    this.parts = null;
    this.eventsTimer = null;
    this.follower = null; // the live output of this.id, while it runs
    this.followedAttempt = null;
    this.collected = new CollectedFiles();
    store.addEventListener("change", (event) => {
      if (event.detail.id === this.id) this.changed();
    });
    // A relist stores tasks without a "change" each; this page may be showing one of them.
    store.addEventListener("reset", () => {
      if (this.id) this.changed();
    });
  }

  /** Show the page for one task; called by the router. */
  async show(id) {
    this.unfollow();
    this.id = id;
    this.build(id);
    const entry = this.store.get(id);
    if (entry) this.changed();
    try {
      this.store.upsert(await api.getTask(id)); // fresh output and timestamps
      // The read may tell the store nothing new (a relist got there first, without a
      // "change"): draw from what it holds either way.
      if (this.id === id) this.changed();
    } catch (error) {
      if (this.id === id) this.unreadable(id, error);
    }
  }

  /** The task could not be read: say why instead of "Loading…". */
  unreadable(id, error) {
    const p = this.parts;
    const notFound = error.status === 404 || error.status === 422;
    setText(p.phase, notFound ? "not found" : "unknown");
    p.phase.dataset.phase = "";
    if (notFound) {
      setText(p.status, "Not found.");
      fill(p.body, h("p", { class: "notice error", role: "alert" },
        `No task ${id} was found: the id may be mistyped, or the task belongs to another `
        + "user.", " ", h("a", { href: "#/" }, "All tasks")));
    } else {
      setText(p.status, `Could not read the task: ${error.message}`);
      fill(p.body, h("p", { class: "notice error", role: "alert" },
        error.status === 401 ? "Sign in to see this task." : error.message));
    }
  }

  hide() {
    this.unfollow();
    this.collected.release();
    this.id = null;
  }

  build(id) {
    const p = {
      phase: h("span", { class: "phase" }, "…"),
      runtime: h("span", { class: "runtime-badge mono", title: "runtime" }),
      cancel: h("button", { type: "button", class: "button danger", hidden: true,
        onclick: () => this.cancel() }, "Cancel task"),
      status: h("p", { class: "status-line", role: "status", "aria-live": "polite" },
        "Loading…"),
      message: h("p", { class: "notice", role: "status", "aria-live": "polite", hidden: true }),
      result: h("pre", { class: "output", "aria-labelledby": "result-heading" }),
      exit: h("p", { class: "muted" }),
      usage: h("dl", { class: "usage", "aria-label": "usage", hidden: true }),
      files: h("section", { class: "panel full", "aria-labelledby": "files-heading", hidden: true },
        h("h2", { id: "files-heading" }, "Collected files"), this.collected.box),
      stdout: output("stdout"),
      stderr: output("stderr"),
      code: h("code", { class: "code" }),
      spec: h("dl", { class: "spec" }),
      timeline: h("ol", { class: "timeline" }),
    };
    p.body = h("div", { class: "task-grid" },
      panel("Result", "result-heading", p.result, p.exit, p.usage),
      panel("Timeline", "timeline-heading", p.timeline),
      panel("Output", "output-heading", p.stdout.box, p.stderr.box),
      p.files,
      panel("Code", "code-heading", h("pre", { class: "code-block" }, p.code)),
      panel("Spec", "spec-heading", p.spec));
    this.parts = p;
    this.codeShown = false;
    this.collected.release();
    fill(this.root,
      h("p", { class: "crumbs" }, h("a", { href: "#/" }, "← All tasks")),
      h("div", { class: "task-head" },
        h("h1", { id: "task-heading", tabindex: "-1" }, "Task ",
          h("span", { class: "mono", title: id }, shortId(id))),
        p.phase, p.runtime, p.cancel),
      p.status, p.message, p.body);
  }

  /** The task changed (or was first read): update everything but the code. */
  changed() {
    const entry = this.store.get(this.id);
    if (!entry || !this.parts) return;
    const { task } = entry;
    const p = this.parts;
    const { status } = task;
    setText(p.phase, status.phase);
    p.phase.dataset.phase = status.phase;
    p.cancel.hidden = TERMINAL.has(status.phase);
    p.cancel.disabled = status.cancel_requested;
    setText(p.cancel, status.cancel_requested ? "Cancel requested" : "Cancel task");
    this.tick();
    setText(p.result, status.result ?? (TERMINAL.has(status.phase) ? "" : "not finished yet"));
    setText(p.exit, status.exit_code === null ? "" : `exit code ${status.exit_code}`);
    setText(p.runtime, task.spec.runtime);
    showUsage(p.usage, status.usage);
    // The panel waits for the final read: a transition from /watch carries no files.
    p.files.hidden = !TERMINAL.has(status.phase) || entry.partial
      || (!task.spec.collect.length && !status.files.length);
    if (!p.files.hidden) {
      this.collected.show(`${task.id}/${task.resource_version}`, status.files,
        status.files_truncated);
    }
    if (!TERMINAL.has(status.phase)) {
      this.follow(status.attempt);
    } else if (!entry.partial) {
      // The final output is what the API kept; it stands in for whatever streamed live. (A
      // terminal phase known from /watch alone waits for this read, streaming until then.)
      this.unfollow();
      p.stdout.finish(status.stdout, status.stdout_truncated);
      p.stderr.finish(status.stderr, status.stderr_truncated);
    }
    if (!this.codeShown) {
      // The highlighter knows Python; other languages are shown as plain text.
      const python = task.spec.runtime.startsWith("python");
      fill(p.code, python ? highlight(task.spec.code) : task.spec.code);
      this.codeShown = true;
    }
    fill(p.spec, specRows(task));
    this.loadEventsSoon();
  }

  /** Called every second, and on change: "Running for 12 s · Started: container running". */
  tick() {
    const entry = this.id && this.store.get(this.id);
    if (!entry || !this.parts) return;
    const { status } = entry.task;
    const since = formatDuration(Date.now() - entry.phaseSince);
    const why = status.message ? `${status.reason}: ${status.message}` : status.reason;
    const when = TERMINAL.has(status.phase) ? `${since} ago` : `for ${since}`;
    const ran = runTime(status);
    const ranText = ran === null ? "" : ` · ran ${formatRunTime(ran)}`;
    setText(this.parts.status, `${status.phase} ${when}${ranText} · ${why}`);
  }

  /** Stream the output of this task's attempt into the boxes, unless that began already. */
  follow(attempt) {
    // Also after `end`: /watch may still say Running for a moment, and the boxes hold it all.
    if (this.followedAttempt === attempt) return;
    this.unfollow();
    // An admin requeue starts a new attempt, with output of its own.
    this.parts.stdout.clear();
    this.parts.stderr.clear();
    const id = this.id;
    const boxes = { stdout: this.parts.stdout, stderr: this.parts.stderr };
    this.followedAttempt = attempt;
    this.follower = new LogFollower(id, {
      onOutput: (chunk) => boxes[chunk.stream]?.append(chunk.text),
      onEnd: (end) => {
        this.follower = null;
        boxes.stdout.mark(end.stdout_truncated);
        boxes.stderr.mark(end.stderr_truncated);
        this.store.refresh(id); // the final output, should /watch not have told yet
      },
    }).start();
  }

  unfollow() {
    this.follower?.stop();
    this.follower = null;
    this.followedAttempt = null;
  }

  loadEventsSoon() {
    clearTimeout(this.eventsTimer);
    this.eventsTimer = setTimeout(() => this.loadEvents(), 100);
  }

  async loadEvents() {
    const id = this.id;
    let events;
    try {
      events = (await api.events(id)).items;
    } catch {
      return; // the next change tries again
    }
    if (id !== this.id) return;
    fill(this.parts.timeline, events.map((event, index) => timelineItem(event, events[index - 1])));
  }

  async cancel() {
    const id = this.id;
    if (!window.confirm(`Cancel task ${shortId(id)}? Its container is stopped.`)) return;
    const message = this.parts.message;
    try {
      this.store.upsert(await api.cancel(id));
      showNotice(message, "Cancellation requested; the controller stops the task.", false);
    } catch (error) {
      showNotice(message, `Could not cancel: ${error.message}`, true);
    }
  }
}

function panel(title, headingId, ...children) {
  return h("section", { class: "panel", "aria-labelledby": headingId },
    h("h2", { id: headingId }, title), ...children);
}

/**
 * A stdout or stderr box: its text, and a badge when the API cut it at the cap. Live chunks
 * are appended to one text node (never parsed as markup); a box scrolled to its end stays at
 * the end as text arrives, one the reader scrolled up stays where it is.
 */
function output(name) {
  const badge = h("span", { class: "badge warn", hidden: true }, "truncated");
  const pre = h("pre", { class: "output", "aria-label": name, dataset: { empty: "pending" } });
  const box = h("div", { class: "stream", dataset: { stream: name } },
    h("h3", {}, name, " ", badge), pre);
  let text = pre.appendChild(document.createTextNode(""));

  function keepingTheEnd(write) {
    const atEnd = pre.scrollHeight - pre.scrollTop - pre.clientHeight < 2;
    write();
    if (atEnd) pre.scrollTop = pre.scrollHeight;
  }
  function mark(truncated) {
    badge.hidden = !truncated;
    box.dataset.truncated = String(Boolean(truncated));
  }
  return {
    box,
    mark,
    clear() {
      text.data = "";
      pre.dataset.empty = "pending";
      mark(false);
    },
    append(chunk) {
      if (!chunk) return;
      keepingTheEnd(() => text.appendData(chunk));
      pre.dataset.empty = "false";
    },
    /** The task ended: show its final output (unchanged text is left alone, scroll too). */
    finish(final, truncated) {
      const value = final ?? "";
      if (text.data !== value || pre.childNodes.length !== 1) {
        keepingTheEnd(() => {
          text = document.createTextNode(value);
          pre.replaceChildren(text);
        });
      }
      pre.dataset.empty = value ? "false" : "true";
      mark(truncated);
    },
  };
}

function specRows(task) {
  const { spec, status } = task;
  const res = spec.resources;
  const rows = [
    ["id", task.id],
    ["type", spec.task_type],
    ["runtime", spec.runtime],
    ["resources", `${res.cpu} cpu · ${res.gpu} gpu · ${res.ram} ram · ${res.storage} storage`],
    ["timeout", `${spec.timeout_seconds} s`],
    ["stdin", spec.stdin === null ? "none" : spec.stdin],
    ["files", spec.files.map((file) => `${file.name} (${file.encoding})`).join(", ") || "none"],
    ["args", spec.args.length ? JSON.stringify(spec.args) : "none"],
    ["env", Object.entries(spec.env).map(([name, value]) => `${name}=${value}`).join(", ")
      || "none"],
    ["collect", spec.collect.join(", ") || "none"],
    ["attempt", String(status.attempt)],
    ["cores", status.assigned.cpus.join(", ") || "none"],
    ["GPUs", status.assigned.gpus.join(", ") || "none"],
    ["submitted", formatTime(task.created_at)],
    ["scheduled", formatTime(status.scheduled_at)],
    ["started", formatTime(status.started_at)],
    ["finished", formatTime(status.finished_at)],
  ];
  if (task.batch_id) rows.splice(1, 0, ["batch", task.batch_id]);
  const ran = runTime(status);
  if (ran !== null) rows.push(["run time", formatRunTime(ran)]);
  if (status.stuck) rows.push(["stuck", status.stuck.why]);
  return rows.map(([term, value]) => [h("dt", {}, term), h("dd", {}, value)]);
}

/** What the run cost: wall time, CPU time, peak memory; hidden until the run has ended. */
function showUsage(dl, usage) {
  dl.hidden = !usage;
  if (!usage) return;
  fill(dl, [
    ["wall time", formatSeconds(usage.wall_seconds)],
    ["CPU time", formatSeconds(usage.cpu_seconds)],
    ["peak memory", formatFileSize(usage.peak_memory_bytes)],
  ].map(([term, value]) => [h("dt", {}, term), h("dd", { dataset: { usage: term } }, value)]));
}

function timelineItem(event, previous) {
  const gap = previous ? Date.parse(event.at) - Date.parse(previous.at) : null;
  return h("li", { dataset: { toPhase: event.to_phase } },
    h("time", { datetime: event.at, title: event.at }, formatTime(event.at)),
    gap === null ? null : h("span", { class: "muted" }, ` +${(gap / 1000).toFixed(1)} s`),
    h("div", {}, `${event.from_phase ?? "—"} → `,
      h("span", { class: "phase", dataset: { phase: event.to_phase } }, event.to_phase),
      " ", h("span", { class: "reason" }, event.reason)),
    event.message ? h("div", { class: "muted" }, event.message) : null);
}

export function showNotice(el, text, isError) {
  el.hidden = false;
  el.classList.toggle("error", isError);
  setText(el, text);
}
