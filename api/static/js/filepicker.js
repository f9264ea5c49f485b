/**
 * The submit form's files: local files added with <input type=file multiple>, read in the
 * browser (js/files.js), listed with their size, each with a name that may be edited (to put it
 * in a folder under the work directory) and a Remove button. The API checks the names; its
 * error for file N is shown on file N's row.
 */

import { byId, fill, h, setText } from "./dom.js";
import { formatFileSize } from "./format.js";
import { readLocalFile } from "./files.js";

export class FilePicker {
  constructor() {
    this.input = byId("files");
    this.list = byId("file-list");
    this.summary = byId("files-summary");
    this.error = byId("files-error");
    this.files = []; // {name, size, content, encoding, row: {li, name, error}}
    this.input.addEventListener("change", () => this.add([...this.input.files]));
  }

  async add(files) {
    this.showError(null);
    try {
      for (const read of await Promise.all(files.map(readLocalFile))) {
        // The same name again replaces the file: a name is given once per task.
        this.files = this.files.filter((file) => file.name !== read.name);
        this.files.push(read);
      }
    } catch (error) {
      this.showError(`Could not read a file: ${error.message}`);
    }
    this.input.value = ""; // so the same file can be added again after a Remove
    this.render();
  }

  remove(file) {
    this.files = this.files.filter((other) => other !== file);
    this.render();
    this.input.focus();
  }

  render() {
    fill(this.list, this.files.map((file, index) => this.rowOf(file, index)));
    const total = this.files.reduce((sum, file) => sum + file.size, 0);
    const count = this.files.length;
    setText(this.summary, count ? `${count} file${count === 1 ? "" : "s"}, `
      + `${formatFileSize(total)} in all` : "");
  }

  rowOf(file, index) {
    const id = `file-name-${index}`;
    const name = h("input", { id, class: "mono", value: file.name, autocomplete: "off",
      spellcheck: "false", "aria-describedby": `${id}-error` });
    const remove = h("button", { type: "button", class: "button small",
      "aria-label": `Remove ${file.name}`, onclick: () => this.remove(file) }, "Remove");
    name.addEventListener("input", () => {
      file.name = name.value;
      remove.setAttribute("aria-label", `Remove ${file.name}`);
      this.markRow(file, null);
    });
    const error = h("p", { id: `${id}-error`, class: "field-error", hidden: true });
    const li = h("li", { class: "file-row", dataset: { index: String(index) } },
      h("label", { for: id, class: "visually-hidden" }, `Name of file ${index + 1}`),
      name,
      h("span", { class: "muted file-size" },
        `${formatFileSize(file.size)} · ${file.encoding === "utf8" ? "text" : "binary"}`),
      remove,
      error);
    file.row = { li, name, error };
    return li;
  }

  /** The `files` of the request body. */
  body() {
    return this.files.map(({ name, content, encoding }) => ({ name, content, encoding }));
  }

  /** Show the API's message on file `index`'s row (or for the files as a whole). */
  showFileError(index, message) {
    const file = this.files[index];
    if (file?.row) this.markRow(file, message);
    else this.showError(message);
  }

  markRow(file, message) {
    const { name, error, li } = file.row;
    name.setAttribute("aria-invalid", message ? "true" : "false");
    li.dataset.invalid = String(Boolean(message));
    error.hidden = !message;
    setText(error, message ?? "");
  }

  showError(message) {
    this.error.hidden = !message;
    setText(this.error, message ?? "");
  }

  clearErrors() {
    this.showError(null);
    for (const file of this.files) if (file.row) this.markRow(file, null);
  }

  /** The first control that shows an error, to move focus to. */
  firstInvalid() {
    const file = this.files.find((f) => f.row?.li.dataset.invalid === "true");
    return file ? file.row.name : this.input;
  }
}
