/**
 * Follows one task's stdout and stderr live: GET /tasks/{id}/logs?follow=true, read with fetch
 * (js/sse.js) so that it carries the tab's token. The task page (js/taskpage.js) opens one
 * while its task is not terminal and stops it when the task ends or the page is left.
 *
 * Every `output` event carries the chunk's seq as its event id; when the stream breaks, the
 * follower opens it again with `Last-Event-ID`, after a backoff, and the server sends only what
 * was missed. After `end` the server closes the stream and the follower stops.
 */

import { api } from "./api.js";
import { pause, readEvents } from "./sse.js";

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
    this.failures = 0;
    this.stopped = false;
    this.aborter = new AbortController();
    this.waiting = null;
  }

  start() {
    this.run();
    return this;
  }

  stop() {
    this.stopped = true;
    this.aborter.abort();
    this.waiting?.wake();
  }

  async run() {
    while (!this.stopped) {
      const retry = await this.once();
      if (!retry) return;
      const delay = RETRY_MS[Math.min(this.failures, RETRY_MS.length - 1)];
      this.failures += 1;
      this.waiting = pause(delay);
      await this.waiting.done;
    }
  }

  /** Read the stream once; false when there is nothing more to follow. */
  async once() {
    let response;
    try {
      response = await api.logs(this.id,
        { lastEventId: this.lastSeq || null, signal: this.aborter.signal });
    } catch {
      return !this.stopped;
    }
    // 404: the task is gone, or another user's; 401: the page asks for a sign-in.
    if (response.status === 404 || response.status === 401) return false;
    if (!response.ok) return true;
    this.failures = 0;
    try {
      await readEvents(response, (event) => this.received(event));
    } catch {
      // the connection broke (or stop() aborted it)
    }
    return !this.stopped;
  }

  received(message) {
    if (this.stopped) return;
    if (message.type === "end") this.ended(message);
    if (message.type !== "output") return;
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
}
