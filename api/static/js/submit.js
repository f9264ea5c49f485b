/**
 * The submit form. Each field is checked with the seed's rules as the person leaves it and
 * again on submit; nothing is sent while a rule is broken. The API's own 4xx answers are
 * shown by the field their `loc` names, or above the form when they name no field. On 201
 * the page goes to the new task, which it then follows live.
 */

import { api, cleanMessage, detailText } from "./api.js";
import { byId, setText } from "./dom.js";
import { validate } from "./validation.js";

const FIELDS = ["code", "cpu", "gpu", "ram", "storage", "timeout_seconds", "stdin"];

// The seed's two examples, and one that runs long enough to watch it hold a core.
const EXAMPLES = {
  hello: { code: "print('Hello, World!')", cpu: "2", gpu: "0", ram: "512MB", storage: "1GB" },
  count: { code: "for i in range(5): print(f'Count {i}')", cpu: "1", gpu: "0", ram: "256MB",
    storage: "500MB" },
  sleep: { code: "import time\nfor i in range(5):\n    print(i, flush=True)\n    time.sleep(1)\n",
    cpu: "1", gpu: "0", ram: "64MB", storage: "16MB" },
};

export class SubmitForm {
  constructor(store, navigate) {
    this.store = store;
    this.navigate = navigate;
    this.form = byId("submit-form");
    this.button = byId("submit-button");
    this.status = byId("submit-status");
    this.formError = byId("form-error");
    this.touched = new Set();
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.submit();
    });
    for (const name of FIELDS) {
      const input = byId(name);
      // Judge a field once the person has left it, then on every keystroke, so an error
      // does not shout while they are still typing it for the first time.
      input.addEventListener("blur", (event) => {
        this.touched.add(name);
        // Leaving the field for the submit button: submit checks every field anyway, and an
        // error shown now would move the button away between mouse down and mouse up.
        if (event.relatedTarget !== this.button) this.check(name);
      });
      input.addEventListener("input", () => this.touched.has(name) && this.check(name));
    }
    byId("example").addEventListener("change", (event) => this.loadExample(event.target));
  }

  values() {
    const values = {};
    for (const name of FIELDS) values[name] = byId(name).value;
    return values;
  }

  check(name) {
    this.showError(name, validate(this.values())[name] ?? null);
  }

  showError(name, message) {
    const input = byId(name);
    const box = byId(`${name}-error`);
    input.setAttribute("aria-invalid", message ? "true" : "false");
    box.hidden = !message;
    setText(box, message ?? "");
  }

  clearErrors() {
    for (const name of FIELDS) this.showError(name, null);
    this.formError.hidden = true;
  }

  loadExample(select) {
    const example = EXAMPLES[select.value];
    if (!example) return;
    for (const [name, value] of Object.entries(example)) byId(name).value = value;
    this.clearErrors();
    select.value = "";
    byId("code").focus();
  }

  /** The request body, in the seed's shape; timeout and stdin only when given. */
  body(values) {
    const body = {
      task_type: "execute_code",
      code: values.code,
      resources: { cpu: values.cpu, gpu: values.gpu, ram: values.ram, storage: values.storage },
    };
    if (values.timeout_seconds.trim() !== "") body.timeout_seconds = Number(values.timeout_seconds);
    if (values.stdin !== "") body.stdin = values.stdin;
    return body;
  }

  async submit() {
    const values = this.values();
    const errors = validate(values);
    this.clearErrors();
    FIELDS.forEach((name) => this.touched.add(name));
    if (Object.keys(errors).length) {
      for (const [name, message] of Object.entries(errors)) this.showError(name, message);
      setText(this.status, "Fix the marked fields; nothing was sent.");
      byId(Object.keys(errors)[0]).focus();
      return;
    }
    this.button.disabled = true;
    setText(this.status, "Submitting…");
    try {
      const task = await api.submit(this.body(values));
      this.store.upsert(task);
      setText(this.status, "");
      this.navigate(`#/tasks/${encodeURIComponent(task.id)}`);
    } catch (error) {
      this.showApiErrors(error);
      setText(this.status, `Not submitted (HTTP ${error.status || "error"}).`);
    } finally {
      this.button.disabled = false;
    }
  }

  /** Put each entry of the API's `detail` under the field its `loc` names. */
  showApiErrors(error) {
    const loose = [];
    const entries = Array.isArray(error.detail) ? error.detail : [];
    for (const entry of entries) {
      const loc = Array.isArray(entry.loc) ? entry.loc : [];
      const field = [...loc].reverse().find((part) => FIELDS.includes(part));
      if (field) this.showError(field, cleanMessage(entry.msg));
      else loose.push(cleanMessage(entry.msg));
    }
    if (!entries.length) loose.push(detailText(error.detail) || error.message);
    if (loose.length) {
      this.formError.hidden = false;
      setText(this.formError, loose.join("; "));
    }
  }
}
