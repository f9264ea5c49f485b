/**
 * A task's collected files on its page (`status.files`): each with its size and a download
 * link, and the images among them (PNG, SVG, JPEG, GIF, WebP) shown inline.
 *
 * A download is a Blob URL of an `application/octet-stream` blob made from the API's base64,
 * so opening it saves it and never renders it. An image is a `data:` URL of its own type,
 * shown only by <img>, where an SVG's script does not run; opened on its own (a new tab), a
 * `data:` document has an opaque origin and cannot reach this page's storage, where a `blob:`
 * one would run as this origin. No file is ever inserted as markup. The Blob URLs are revoked
 * when the list is drawn again or the page is left.
 */

import { fill, h } from "./dom.js";
import { formatFileSize } from "./format.js";
import { fromBase64, imageType } from "./files.js";

export class CollectedFiles {
  constructor() {
    this.box = h("div", { class: "collected" });
    this.urls = [];
    this.shown = null; // which task version's files are drawn: each is drawn once
  }

  /** Draw `files` ({name, size, content}) of the task version `key`, and the truncation flag. */
  show(key, files, truncated) {
    if (this.shown === key) return;
    this.release();
    this.shown = key;
    if (!files.length) {
      fill(this.box, h("p", { class: "muted" }, "No file was collected."));
      return;
    }
    const items = files.map((file) => this.item(file));
    fill(this.box,
      truncated ? h("p", { class: "badge warn" },
        "truncated: more files matched than the collect bounds allow") : null,
      h("ul", { class: "collected-list" }, items));
  }

  item(file) {
    const bytes = fromBase64(file.content);
    const download = this.url(new Blob([bytes], { type: "application/octet-stream" }));
    const type = imageType(file.name);
    return h("li", { dataset: { name: file.name } },
      h("a", { href: download, download: file.name.split("/").pop(), class: "mono" },
        file.name),
      h("span", { class: "muted" }, ` ${formatFileSize(file.size)}`),
      type ? h("img", { src: `data:${type};base64,${file.content}`, alt: file.name,
        class: "collected-image" }) : null);
  }

  url(blob) {
    const url = URL.createObjectURL(blob);
    this.urls.push(url);
    return url;
  }

  /** Revoke every URL made for the files drawn. */
  release() {
    for (const url of this.urls) URL.revokeObjectURL(url);
    this.urls = [];
    this.shown = null;
  }
}
