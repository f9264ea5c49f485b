/**
 * The REST client: only the public API of shared/spec/API.md, and the URLs of its event
 * streams for EventSource. Paths are relative, so the page also works when taskyard is served
 * under a path prefix.
 */

export class ApiError extends Error {
  constructor(status, detail) {
    super(detailText(detail) || `HTTP ${status}`);
    this.status = status;
    this.detail = detail;
  }
}

/** A `detail` (a string, or FastAPI's list of {loc, msg}) as one sentence for a person. */
export function detailText(detail) {
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) return detail.map((item) => cleanMessage(item.msg)).join("; ");
  return "";
}

/** pydantic prefixes its messages with "Value error, "; a person does not need it. */
export const cleanMessage = (msg) => String(msg ?? "").replace(/^Value error, /, "");

async function request(method, path, { body, token } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (token) headers.Authorization = `Bearer ${token}`;
  let response;
  try {
    response = await fetch(path, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (error) {
    throw new ApiError(0, `taskyard did not answer (${error.message})`);
  }
  const data = await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(response.status, data?.detail ?? response.statusText);
  return data;
}

const task = (id) => `tasks/${encodeURIComponent(id)}`;

export const api = {
  listTasks({ phase, limit = 100, cursor } = {}) {
    const query = new URLSearchParams({ limit: String(limit) });
    if (phase) query.set("phase", phase);
    if (cursor) query.set("cursor", cursor);
    return request("GET", `tasks?${query}`);
  },
  getTask: (id) => request("GET", task(id)),
  events: (id) => request("GET", `${task(id)}/events`),
  /** The URL of a task's output as Server-Sent Events, for EventSource (js/logs.js). */
  logsUrl(id, { follow = false, since = 0 } = {}) {
    const query = new URLSearchParams();
    if (follow) query.set("follow", "true");
    if (since > 0) query.set("since", String(since));
    return `${task(id)}/logs?${query}`;
  },
  submit: (body) => request("POST", "tasks", { body }),
  cancel: (id) => request("DELETE", task(id)),
  capacity: () => request("GET", "capacity"),
  stuck: (token) => request("GET", "admin/tasks/stuck", { token }),
  reset: (id, to, token) => request("POST", `admin/${task(id)}/reset`, { body: { to }, token }),
};
