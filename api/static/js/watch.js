/**
 * Follows GET /watch and never loses a transition.
 *
 * The stream is read with fetch (js/sse.js), so it carries the tab's token like every other
 * request. When it breaks, the watch opens it again with `Last-Event-ID`, and the server
 * replays exactly what was missed. 410 means the history it would resume from was compacted:
 * the tasks are listed again and the watch starts from now. 401 puts the page in its sign-in
 * state (js/auth.js); the watch keeps asking, slowly, so that it notices open mode coming
 * back, and at once after a sign-in.
 */

import { api } from "./api.js";
import { pause, readEvents } from "./sse.js";

const RETRY_MS = [1000, 2000, 5000, 10000];
const SIGN_IN_RETRY_MS = 5000;

export class Watch {
  /**
   * onTransition(event): one transition, in commit order.
   * onRelist(): called when the page must list the tasks again (first open, or a gap).
   * onStatus(state, text): "live" | "reconnecting" | "offline" | "signin", for the badge.
   */
  constructor({ onTransition, onRelist, onStatus }) {
    this.onTransition = onTransition;
    this.onRelist = onRelist;
    this.onStatus = onStatus;
    this.lastId = null; // the seq of the last transition received
    this.needsRelist = true;
    this.failures = 0;
    this.aborter = null;
    this.waiting = null; // the pause between two tries, which restart() cuts short
  }

  start() {
    this.run();
  }

  /** Signed in or out: another caller sees other tasks, so list again and watch from now. */
  restart() {
    this.lastId = null;
    this.needsRelist = true;
    this.failures = 0;
    this.aborter?.abort();
    this.waiting?.wake();
  }

  async run() {
    for (;;) {
      let delay;
      try {
        delay = await this.once();
      } catch (error) {
        // A view's bug must not end the watch for good.
        console.warn("watch:", error);
        delay = RETRY_MS[1];
      }
      this.waiting = pause(delay);
      await this.waiting.done;
      this.waiting = null;
    }
  }

  /** Open the stream and read it until it ends; returns how long to wait before the next. */
  async once() {
    const aborter = new AbortController();
    this.aborter = aborter;
    let response;
    try {
      response = await api.watch({ lastEventId: this.lastId, signal: aborter.signal });
    } catch {
      if (aborter.signal.aborted) return 0;
      return this.offline("offline");
    }
    if (response.status === 401) {
      this.onStatus("signin", "sign in required");
      return SIGN_IN_RETRY_MS;
    }
    if (response.status === 410) {
      this.lastId = null;
      this.needsRelist = true;
      return 0;
    }
    if (!response.ok) return this.offline(`HTTP ${response.status}`);
    this.failures = 0;
    this.onStatus("live", "live");
    // A stream opened without a position starts from now: list to see what came before it.
    // The stream is already open, so nothing committed after the list can be missed.
    if (this.needsRelist) {
      this.needsRelist = false; // set again by a restart() while the list is read
      try {
        await this.onRelist();
      } catch (error) {
        this.needsRelist = true;
        aborter.abort();
        // A 401 has put the page in its sign-in state; the next try says so on the badge.
        if (error.status !== 401) this.onStatus("offline", `could not list tasks: ${error.message}`);
        return RETRY_MS[1];
      }
    }
    try {
      await readEvents(response, (event) => this.received(event));
    } catch {
      if (aborter.signal.aborted) return 0; // restart(): open again at once
    }
    return this.reconnecting();
  }

  received(message) {
    if (message.type !== "transition") return;
    const seq = Number(message.id);
    if (Number.isFinite(seq) && seq > 0) this.lastId = seq;
    let event;
    try {
      event = JSON.parse(message.data);
    } catch {
      return; // not a transition we can read; the next one still is
    }
    this.onTransition(event);
  }

  /** The stream ended (the server closed it, or the network broke): open it again soon. */
  reconnecting() {
    // Without a position (no event yet), the new stream starts from now: list again.
    if (this.lastId === null) this.needsRelist = true;
    this.onStatus("reconnecting", "reconnecting…");
    return RETRY_MS[0];
  }

  offline(why) {
    const delay = RETRY_MS[Math.min(this.failures, RETRY_MS.length - 1)];
    this.failures += 1;
    this.onStatus("offline", `${why}, retrying in ${Math.round(delay / 1000)} s`);
    return delay;
  }
}
