/**
 * The REST client: only the public API of docs/api.md. Every request and event stream carries
 * the tab's token (js/auth.js) as `Authorization: Bearer`, never in the URL; each 401 is
 * reported to js/auth.js, which puts the page in its sign-in state. Paths are relative, so the
 * page also works when taskyard is served under a path prefix.
 */

import { auth } from "./auth.js";

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

function headersFor(token, accept, extra = {}) {
  const headers = { Accept: accept, ...extra };
  if (token) headers.Authorization = `Bearer ${token}`;
  return headers;
}

/**
 * One request. `token` overrides the tab's (a sign-in form tries a token before keeping it).
 * The 401 of such a trial, or of an admin endpoint (`quiet`: the tab's token may be a user's,
 * and open mode lets the rest of the page in without one), is the caller's to show, not a
 * reason to sign the tab out.
 */
async function request(method, path, { body, token, quiet } = {}) {
  const trial = token !== undefined || Boolean(quiet);
  const sent = token !== undefined ? token : auth.token;
  const extra = body === undefined ? {} : { "Content-Type": "application/json" };
  let response;
  try {
    response = await fetch(path, {
      method, headers: headersFor(sent, "application/json", extra),
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (error) {
    throw new ApiError(0, `taskyard did not answer (${error.message})`);
  }
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    const error = new ApiError(response.status, data?.detail ?? response.statusText);
    if (response.status === 401 && !trial) auth.refused(sent, error.message);
    throw error;
  }
  if (!trial) auth.accepted(sent);
  return data;
}

/**
 * Open an event stream: the fetch response, for js/sse.js to read once `ok`. A 401 is
 * reported like any request's; other statuses are the caller's to handle.
 */
async function stream(path, { lastEventId, signal } = {}) {
  const sent = auth.token;
  const extra = lastEventId ? { "Last-Event-ID": String(lastEventId) } : {};
  const response = await fetch(path, {
    headers: headersFor(sent, "text/event-stream", extra), signal, cache: "no-store",
  });
  if (response.status === 401) {
    const data = await response.json().catch(() => null);
    auth.refused(sent, detailText(data?.detail) || "HTTP 401");
  } else if (response.ok) {
    auth.accepted(sent);
  }
  return response;
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
  submit: (body) => request("POST", "tasks", { body }),
  cancel: (id) => request("DELETE", task(id)),
  capacity: () => request("GET", "capacity"),
  runtimes: () => request("GET", "runtimes"),
  /** GET /watch as a stream (js/watch.js); resumes after `lastEventId`. */
  watch: (options) => stream("watch", options),
  /** A task's output, followed live, as a stream (js/logs.js); resumes after `lastEventId`. */
  logs: (id, options) => stream(`${task(id)}/logs?follow=true`, options),
  /** Whether `token` would be let in: resolves, or rejects with the API's answer. */
  tryToken: (token) => request("GET", "tasks?limit=1", { token }),
  tryAdminToken: (token) => request("GET", "admin/tasks/stuck", { token }),
  // The admin's endpoints, with the tab's token.
  adminCapacity: () => request("GET", "admin/capacity", { quiet: true }),
  stuck: () => request("GET", "admin/tasks/stuck", { quiet: true }),
  reset: (id, to) => request("POST", `admin/${task(id)}/reset`, { body: { to }, quiet: true }),
  tokens: () => request("GET", "admin/tokens", { quiet: true }),
  createToken: (name) => request("POST", "admin/tokens", { body: { name }, quiet: true }),
  revokeToken: (id) => request("DELETE", `admin/tokens/${encodeURIComponent(id)}`,
    { quiet: true }),
};
