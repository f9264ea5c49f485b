/**
 * Server-Sent Events over fetch. EventSource cannot send an Authorization header, and a token
 * in the URL would end up in logs and history; so the page reads `text/event-stream` from a
 * fetch response itself. The caller reconnects, sending the last `id:` it saw as
 * `Last-Event-ID` (js/watch.js, js/logs.js).
 */

/**
 * Read a response's events until the stream ends: onEvent({type, id, data}) for each one, in
 * order. Comments (`: keepalive`) and `retry:` are skipped. Resolves when the server closes
 * the stream; rejects when the connection breaks or `signal` aborts the fetch.
 */
export async function readEvents(response, onEvent) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let event = { type: "", id: null, data: [] };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    // A "\r" at the very end may be the first half of "\r\n": keep it for the next chunk.
    const lines = buffer.split(/\r\n|\n|\r(?!$)/);
    buffer = lines.pop();
    for (const line of lines) {
      if (line === "") {
        if (event.data.length) {
          onEvent({ type: event.type || "message", id: event.id, data: event.data.join("\n") });
        }
        event = { type: "", id: event.id, data: [] };
        continue;
      }
      if (line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let text = colon < 0 ? "" : line.slice(colon + 1);
      if (text.startsWith(" ")) text = text.slice(1);
      if (field === "data") event.data.push(text);
      else if (field === "event") event.type = text;
      else if (field === "id" && !text.includes("\0")) event.id = text;
    }
  }
}

/** A promise resolved after `ms`, or at once by `wake()`, whichever comes first. */
export function pause(ms) {
  let wake;
  const done = new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    wake = () => {
      clearTimeout(timer);
      resolve();
    };
  });
  return { done, wake };
}
