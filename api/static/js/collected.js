/**
 * A task's collected files on its page (`status.files`): each with its size and a download
 * link, and the images among them (PNG, SVG, JPEG, GIF, WebP) shown inline.
 *
 * Both go through Blob URLs made from the base64 the API sends (the page's policy allows
 * `blob:` images and nothing else new). A download is an `application/octet-stream` blob, so
 * opening it never renders it; an image is a blob of its own type shown only by <img>, where
 * an SVG's script does not run. No file is ever inserted as markup. The URLs are revoked when
 * the list is drawn again or the page is left.
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
      type ? h("img", { src: this.url(new Blob([bytes], { type })), alt: file.name,
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
