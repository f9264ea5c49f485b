/**
 * The seed's request rules, checked in the browser before anything is sent. The rules and
 * messages are the API's (models/quantities.py, api/admission.py), so a person sees the same
 * sentence whether the browser or the server catches a mistake. The server checks again; the
 * limits that depend on its settings or on the host (a larger minimum RAM, more cores than it
 * has) come back as 422 and are shown by the same field.
 */

const MIB = 1024 * 1024;
export const MIN_RAM_BYTES = 6 * MIB; // TASKYARD_MIN_RAM's default
export const MIN_STORAGE_BYTES = 1 * MIB; // TASKYARD_MIN_STORAGE's default
export const MAX_TIMEOUT_SECONDS = 600; // TASKYARD_MAX_TIMEOUT_SECONDS's default

const COUNT = /^[0-9]+$/;
const SIZE = /^([0-9]+)(MB|GB)$/i;

/** Python's repr() of a short string, as the API quotes the value it refuses. */
export function pyRepr(text) {
  const quote = text.includes("'") && !text.includes('"') ? '"' : "'";
  const body = text.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/\t/g, "\\t")
    .replace(/\r/g, "\\r");
  return quote + (quote === "'" ? body.replace(/'/g, "\\'") : body) + quote;
}

/** Bytes of a valid size string ("512MB", "1gb"), or null. */
export function parseSize(text) {
  const match = SIZE.exec(text);
  if (!match) return null;
  return Number(match[1]) * (match[2].toUpperCase() === "GB" ? 1024 * MIB : MIB);
}

export function checkCount(text) {
  return COUNT.test(text) ? null
    : `${pyRepr(text)} should be a non-negative integer string such as '2'`;
}

export function checkSize(name, text) {
  const bytes = parseSize(text);
  if (bytes === null) {
    return `${pyRepr(text)} is not a valid size: use digits followed by MB or GB, such as '512MB'`;
  }
  if (name === "ram" && bytes < MIN_RAM_BYTES) {
    return "ram must be at least 6MB (the container engine's minimum)";
  }
  if (name === "storage" && bytes < MIN_STORAGE_BYTES) return "storage must be at least 1MB";
  return null;
}

export function checkTimeout(text) {
  if (text.trim() === "") return null; // optional: the server's default applies
  const seconds = /^[0-9]+$/.test(text.trim()) ? Number(text.trim()) : NaN;
  return seconds >= 1 && seconds <= MAX_TIMEOUT_SECONDS ? null
    : `timeout_seconds must be between 1 and ${MAX_TIMEOUT_SECONDS}`;
}

/** The non-blank lines of a text field (args, collect), as typed. */
export const lines = (text) => text.split(/\r\n|\n|\r/).filter((line) => line.trim() !== "");

/** "A=1\nB=x=y" -> {A: "1", B: "x=y"}; lines without "=" are left to `checkEnv`. */
export function parseEnv(text) {
  const env = {};
  for (const line of lines(text)) {
    const at = line.indexOf("=");
    if (at > 0) env[line.slice(0, at).trim()] = line.slice(at + 1);
  }
  return env;
}

// The API's rule for a variable's name (models/schemas.py).
const ENV_NAME = /^[A-Z_][A-Z0-9_]*$/;

export function checkEnv(text) {
  for (const line of lines(text)) {
    const at = line.indexOf("=");
    if (at <= 0) return `${pyRepr(line)} is not NAME=VALUE`;
    const name = line.slice(0, at).trim();
    if (!ENV_NAME.test(name) || name.length > 128) {
      return `env name ${pyRepr(name)} must match [A-Z_][A-Z0-9_]* (at most 128 characters)`;
    }
  }
  return null;
}

/** Field name -> message for each field that breaks a rule; empty when all pass. */
export function validate(values) {
  const errors = {};
  const checks = {
    cpu: checkCount(values.cpu),
    gpu: checkCount(values.gpu),
    ram: checkSize("ram", values.ram),
    storage: checkSize("storage", values.storage),
    timeout_seconds: checkTimeout(values.timeout_seconds),
    env: checkEnv(values.env ?? ""),
  };
  for (const [field, message] of Object.entries(checks)) if (message) errors[field] = message;
  return errors;
}
