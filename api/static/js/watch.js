/**
 * Follows GET /watch with EventSource and never loses a transition.
 *
 * EventSource reconnects by itself after a network blip and sends `Last-Event-ID`, so the
 * server replays exactly what was missed. It gives up for good on an HTTP error status,
 * without saying which; then one fetch asks the server: 410 means the history we would resume
 * from was compacted, so the tasks are listed again and the watch starts from now.
 */

const RETRY_MS = [1000, 2000, 5000, 10000];

export class Watch {
  /**
   * onTransition(event): one transition, in commit order.
   * onRelist(): called when the page must list the tasks again (first open, or a gap).
   * onStatus(state, text): "live" | "reconnecting" | "offline", for the connection badge.
   */
  constructor({ onTransition, onRelist, onStatus }) {
    this.onTransition = onTransition;
    this.onRelist = onRelist;
    this.onStatus = onStatus;
    this.lastId = null; // the seq of the last transition received
    this.needsRelist = true;
    this.source = null;
    this.failures = 0;
  }

  start() {
    this.open(null);
  }

  open(since) {
    const url = since === null ? "watch" : `watch?since=${since}`;
    const source = new EventSource(url);
    this.source = source;
    source.addEventListener("open", () => this.opened());
    source.addEventListener("transition", (message) => this.received(message));
    source.addEventListener("error", () => this.failed(source));
  }

  async opened() {
    this.failures = 0;
    this.onStatus("live", "live");
    // A stream opened without a position starts from now: list to see what came before it.
    // The stream is already open, so nothing committed after the list can be missed.
    if (this.needsRelist) {
      this.needsRelist = false;
      try {
        await this.onRelist();
      } catch (error) {
        this.onStatus("offline", `could not list tasks: ${error.message}`);
        this.needsRelist = true;
        setTimeout(() => this.source.readyState === EventSource.OPEN && this.opened(),
          RETRY_MS[1]);
      }
    }
  }

  received(message) {
    const seq = Number(message.lastEventId);
    if (Number.isFinite(seq) && seq > 0) this.lastId = seq;
    let event;
    try {
      event = JSON.parse(message.data);
    } catch {
      return; // not a transition we can read; the next one still is
    }
    this.onTransition(event);
  }

  failed(source) {
    if (source !== this.source) return;
    if (source.readyState === EventSource.CONNECTING) {
      // The browser retries by itself and resumes with Last-Event-ID. Without one (no event
      // yet), the new stream starts from now, so list again once it opens.
      if (this.lastId === null) this.needsRelist = true;
      this.onStatus("reconnecting", "reconnecting…");
      return;
    }
    source.close();
    this.recover();
  }

  /** The browser gave up (an HTTP error status): find out why, then reopen. */
  async recover() {
    this.onStatus("reconnecting", "reconnecting…");
    const since = this.lastId;
    const probe = new AbortController();
    let status = 0;
    try {
      const response = await fetch(since === null ? "watch" : `watch?since=${since}`,
        { signal: probe.signal, headers: { Accept: "text/event-stream" } });
      status = response.status;
    } catch {
      status = 0; // no answer: the server is still away
    } finally {
      probe.abort(); // only the status was wanted; EventSource reads the stream
    }
    if (status === 410) {
      this.lastId = null;
      this.needsRelist = true;
      this.open(null);
    } else if (status === 200) {
      this.needsRelist = since === null;
      this.open(since);
    } else {
      const delay = RETRY_MS[Math.min(this.failures, RETRY_MS.length - 1)];
      this.failures += 1;
      this.onStatus("offline", `offline, retrying in ${Math.round(delay / 1000)} s`);
      setTimeout(() => this.recover(), delay);
    }
  }
}
