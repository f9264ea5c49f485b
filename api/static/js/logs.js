/**
 * Follows one task's stdout and stderr live: GET /tasks/{id}/logs?follow=true with
 * EventSource. The task page (js/taskpage.js) opens one while its task is not terminal and
 * stops it when the task ends or the page is left.
 *
 * Every `output` event carries the chunk's seq as its event id, so after a network blip the
 * browser reconnects by itself with Last-Event-ID and the server sends only what was missed.
 * After `end` the server closes the stream; the follower closes the EventSource at once, or
 * the browser would reconnect and be sent `end` again. Where the browser gives up for good
 * (an HTTP error status), the follower reopens from the last seq it saw, with a backoff.
 */

import { api } from "./api.js";

const RETRY_MS = [1000, 2000, 5000, 10000];

export class LogFollower {
  /**
   * onOutput({seq, stream, text, at}): one chunk, in the order the task printed it.
   * onEnd({phase, reason, exit_code, stdout_truncated, stderr_truncated}): the task ended;
   * nothing follows.
   */
  constructor(id, { onOutput, onEnd }) {
    this.id = id;
    this.onOutput = onOutput;
    this.onEnd = onEnd;
    this.lastSeq = 0;
    this.source = null;
    this.retryTimer = null;
    this.failures = 0;
    this.stopped = false;
  }

  start() {
    this.open();
    return this;
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    this.source?.close();
    this.source = null;
  }

  open() {
    if (this.stopped) return;
    const source = new EventSource(api.logsUrl(this.id, { follow: true, since: this.lastSeq }));
    this.source = source;
    source.addEventListener("open", () => { this.failures = 0; });
    source.addEventListener("output", (message) => this.received(message));
    source.addEventListener("end", (message) => this.ended(message));
    source.addEventListener("error", () => this.failed(source));
  }

  received(message) {
    let chunk;
    try {
      chunk = JSON.parse(message.data);
    } catch {
      return; // not a chunk we can read; the next one still is
    }
    // A chunk carries its seq; one already shown is never shown twice. (The final output of
    // a task whose chunks were compacted away comes without one.)
    if (Number.isInteger(chunk.seq)) {
      if (chunk.seq <= this.lastSeq) return;
      this.lastSeq = chunk.seq;
    }
    this.onOutput(chunk);
  }

  ended(message) {
    this.stop();
    let end = {};
    try {
      end = JSON.parse(message.data);
    } catch {
      // the task still ended; its page reads the rest from GET /tasks/{id}
    }
    this.onEnd(end);
  }

  failed(source) {
    if (this.stopped || source !== this.source) return;
    // CONNECTING: the browser retries by itself and resumes with Last-Event-ID.
    if (source.readyState !== EventSource.CLOSED) return;
    const delay = RETRY_MS[Math.min(this.failures, RETRY_MS.length - 1)];
    this.failures += 1;
    this.retryTimer = setTimeout(() => this.open(), delay);
  }
}
