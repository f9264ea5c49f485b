/** Formatting of ids, phases, sizes, durations and times for people. */

export const PHASES = ["Pending", "Scheduled", "Running", "Succeeded", "Failed", "TimedOut",
  "Cancelled"];
export const TERMINAL = new Set(["Succeeded", "Failed", "TimedOut", "Cancelled"]);

const MIB = 1024 * 1024;
const GIB = 1024 * MIB;

/** Ids are 32 hex characters; eight tell tasks apart on one host. */
export const shortId = (id) => String(id).slice(0, 8);

/** Link to a task's page. The id is URI-encoded, so the href is always a fragment. */
export const taskHref = (id) => `#/tasks/${encodeURIComponent(id)}`;

/** Bytes in the seed's binary units (1MB = 1024×1024 bytes), as the API writes them. */
export function formatBytes(bytes) {
  if (bytes >= GIB) return `${trim(bytes / GIB)}GB`;
  return `${trim(bytes / MIB)}MB`;
}

/** A file or memory size for people: "812 B", "3.2 KB", "9.0 MB", "1.5 GB" (binary units). */
export function formatFileSize(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < MIB) return `${trim(bytes / 1024)} KB`;
  if (bytes < GIB) return `${trim(bytes / MIB)} MB`;
  return `${trim(bytes / GIB)} GB`;
}

/** Seconds as the API measures them (wall, CPU): "0.018 s", "2.41 s", else `formatDuration`. */
export function formatSeconds(seconds) {
  if (seconds < 1) return `${seconds.toFixed(3)} s`;
  if (seconds < 60) return `${seconds.toFixed(2)} s`;
  return formatDuration(seconds * 1000);
}

function trim(value) {
  return value >= 100 || Number.isInteger(value) ? String(Math.round(value)) : value.toFixed(1);
}

/** The first line of a task's code that says something (not blank), for a one-line view. */
export function firstLine(code) {
  const line = String(code ?? "").split(/\r\n|\n|\r/).find((text) => text.trim() !== "");
  return line === undefined ? "" : line.trim();
}

/** How long a finished task ran (finished_at - started_at), in ms; null if it never ran. */
export function runTime(status) {
  if (!TERMINAL.has(status.phase) || !status.started_at || !status.finished_at) return null;
  const ms = Date.parse(status.finished_at) - Date.parse(status.started_at);
  return Number.isFinite(ms) ? Math.max(0, ms) : null;
}

/** "4 s", "2 min 03 s", "1 h 05 min": short enough for a table cell on a phone. */
export function formatDuration(ms) {
  const seconds = Math.max(0, Math.floor(ms / 1000));
  if (seconds < 60) return `${seconds} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min ${pad(seconds % 60)} s`;
  const hours = Math.floor(minutes / 60);
  if (hours < 48) return `${hours} h ${pad(minutes % 60)} min`;
  return `${Math.floor(hours / 24)} d`;
}

/** A run time: tenths of a second below ten seconds ("0.4 s"), else as `formatDuration`. */
export function formatRunTime(ms) {
  return ms < 10_000 ? `${(Math.floor(ms / 100) / 10).toFixed(1)} s` : formatDuration(ms);
}

const pad = (n) => String(n).padStart(2, "0");

/** A timestamp in the viewer's local time; the full ISO value goes in a title. */
export function formatTime(iso) {
  if (!iso) return "—";
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return String(iso);
  const sameDay = date.toDateString() === new Date().toDateString();
  return sameDay ? date.toLocaleTimeString() : date.toLocaleString();
}
