/**
 * Files in and out of a task, as bytes: a local file read for the submit form (text goes as
 * `utf8`, anything else as `base64`, as POST /tasks takes them), and a collected file's base64
 * turned back into a Blob for the task page.
 */

const TEXT = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

// The images the task page shows inline, by name. SVG is shown only through <img>, where it
// cannot run script; never inserted as markup.
const IMAGE_TYPES = {
  png: "image/png", svg: "image/svg+xml", jpg: "image/jpeg", jpeg: "image/jpeg",
  gif: "image/gif", webp: "image/webp",
};

/** Bytes as base64, in slices small enough for String.fromCharCode's arguments. */
export function toBase64(bytes) {
  let binary = "";
  for (let start = 0; start < bytes.length; start += 0x8000) {
    binary += String.fromCharCode(...bytes.subarray(start, start + 0x8000));
  }
  return btoa(binary);
}

/** base64 (as the API sends a collected file) as bytes. */
export function fromBase64(text) {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i += 1) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

/** A File as the API's {name, content, encoding} plus its size: UTF-8 text without NUL as
 * `utf8` (readable in the task's spec), anything else as `base64`. */
export function readLocalFile(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => {
      const bytes = new Uint8Array(reader.result);
      resolve({ name: file.name, size: bytes.length, ...encode(bytes) });
    };
    reader.onerror = () => reject(reader.error ?? new Error(`could not read ${file.name}`));
    reader.readAsArrayBuffer(file);
  });
}

function encode(bytes) {
  try {
    const text = TEXT.decode(bytes);
    if (!text.includes("\0")) return { content: text, encoding: "utf8" };
  } catch {
    // not UTF-8: sent as base64 below
  }
  return { content: toBase64(bytes), encoding: "base64" };
}

/** The media type to show a collected file inline as an image, or null. */
export function imageType(name) {
  const dot = name.lastIndexOf(".");
  return dot < 0 ? null : IMAGE_TYPES[name.slice(dot + 1).toLowerCase()] ?? null;
}
