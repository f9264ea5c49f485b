/**
 * The submit form. Each field is checked with the seed's rules as the person leaves it and
 * again on submit; nothing is sent while a rule is broken. The API's own 4xx answers are
 * shown by the field their `loc` names (a file's, on that file's row), or above the form when
 * they name no field. On 201 the page goes to the new task, which it then follows live.
 *
 * The runtime picker lists what GET /runtimes lists; the code field's placeholder, label and
 * hello world follow the runtime's language.
 */

import { api, cleanMessage, detailText } from "./api.js";
import { byId, fill, h, setText } from "./dom.js";
import { FilePicker } from "./filepicker.js";
import {
  DEFAULT_RUNTIME, FALLBACK, describe, helloOf, isHello, optionText,
} from "./runtimes.js";
import { lines, parseEnv, validate } from "./validation.js";

const FIELDS = ["runtime", "code", "cpu", "gpu", "ram", "storage", "timeout_seconds", "stdin",
  "args", "env", "collect"];

// The seed's two examples, and one that runs long enough to watch it hold a core.
const EXAMPLES = {
  hello: { runtime: "python", code: "print('Hello, World!')", cpu: "2", gpu: "0", ram: "512MB", storage: "1GB" },
  count: { runtime: "python", code: "for i in range(5): print(f'Count {i}')", cpu: "1", gpu: "0", ram: "256MB",
    storage: "500MB" },
  sleep: { runtime: "python", code: "import time\nfor i in range(5):\n    print(i, flush=True)\n    time.sleep(1)\n",
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
    this.runtime = byId("runtime");
    this.files = new FilePicker();
    this.runtimes = FALLBACK;
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
    this.runtime.addEventListener("change", () => this.runtimeChanged());
    this.showRuntimes(FALLBACK, DEFAULT_RUNTIME);
  }

  /** Fill the picker from GET /runtimes; called each time the form is shown. */
  async loadRuntimes() {
    try {
      const listing = await api.runtimes();
      this.showRuntimes(listing.items.length ? listing.items : FALLBACK, this.runtime.value);
      const missing = listing.not_installed.map((item) => item.name);
      this.notInstalled = missing.length ? `Not installed on this host: ${missing.join(", ")}.`
        : "";
    } catch (error) {
      this.notInstalled = `Could not list the runtimes (${error.message}).`;
    }
    this.describeRuntime();
  }

  showRuntimes(runtimes, selected) {
    this.runtimes = runtimes;
    fill(this.runtime, runtimes.map((runtime) => h("option", { value: runtime.name },
      optionText(runtime))));
    const names = runtimes.map((runtime) => runtime.name);
    this.runtime.value = names.includes(selected) ? selected
      : names.includes(DEFAULT_RUNTIME) ? DEFAULT_RUNTIME : names[0];
    this.runtimeChanged();
  }

  selectedRuntime() {
    return this.runtimes.find((runtime) => runtime.name === this.runtime.value) ?? FALLBACK[0];
  }

  /** A new runtime: its language in the code's label and placeholder; its hello world in the
   * code field unless the person wrote code of their own there. */
  runtimeChanged() {
    const runtime = this.selectedRuntime();
    const code = byId("code");
    const hello = helloOf(runtime.name);
    if (isHello(code.value)) code.value = hello;
    code.placeholder = hello;
    setText(byId("code-label"), `Code (${runtime.language}, ${runtime.main_file})`);
    this.describeRuntime();
  }

  describeRuntime() {
    const text = describe(this.selectedRuntime());
    setText(byId("runtime-hint"), this.notInstalled ? `${text}. ${this.notInstalled}` : text);
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
    // An error in a folded part of the form (stdin, files, args...) unfolds it.
    if (message) input.closest("details")?.setAttribute("open", "");
  }

  clearErrors() {
    for (const name of FIELDS) this.showError(name, null);
    this.files.clearErrors();
    this.formError.hidden = true;
  }

  loadExample(select) {
    const example = EXAMPLES[select.value];
    if (!example) return;
    for (const [name, value] of Object.entries(example)) byId(name).value = value;
    this.runtimeChanged();
    this.clearErrors();
    select.value = "";
    byId("code").focus();
  }

  /** The request body, in the seed's shape plus the runtime; the rest only when given. */
  body(values) {
    const body = {
      task_type: "execute_code",
      code: values.code,
      resources: { cpu: values.cpu, gpu: values.gpu, ram: values.ram, storage: values.storage },
      runtime: values.runtime,
    };
    if (values.timeout_seconds.trim() !== "") body.timeout_seconds = Number(values.timeout_seconds);
    if (values.stdin !== "") body.stdin = values.stdin;
    const files = this.files.body();
    if (files.length) body.files = files;
    const args = lines(values.args);
    if (args.length) body.args = args;
    const env = parseEnv(values.env);
    if (Object.keys(env).length) body.env = env;
    const collect = lines(values.collect).map((glob) => glob.trim());
    if (collect.length) body.collect = collect;
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
      this.focusFirstError();
    } finally {
      this.button.disabled = false;
    }
  }

  /**
   * Put each entry of the API's `detail` under the field its `loc` names: ["body", "ram"],
   * ["body", "resources", "ram"]; a file's (["body", "files", 1, "name"], or a check across
   * the files whose message begins "files[1]") on that file's row.
   */
  showApiErrors(error) {
    const loose = [];
    const entries = Array.isArray(error.detail) ? error.detail : [];
    for (const entry of entries) {
      const loc = Array.isArray(entry.loc) ? entry.loc : [];
      const message = cleanMessage(entry.msg);
      const named = /^files\[(\d+)\]/.exec(message);
      const field = loc[1] === "resources" ? loc[2] : loc[1];
      if (field === "files" && Number.isInteger(loc[2])) this.files.showFileError(loc[2], message);
      else if (field === "files") this.files.showError(message);
      else if (!field && named) this.files.showFileError(Number(named[1]), message);
      else if (FIELDS.includes(field)) this.showError(field, message);
      else loose.push(message);
    }
    if (!entries.length) loose.push(detailText(error.detail) || error.message);
    if (loose.length) {
      this.formError.hidden = false;
      setText(this.formError, loose.join("; "));
    }
  }

  /** After a refusal, move focus to the first control that shows why. */
  focusFirstError() {
    const invalid = this.form.querySelector('[aria-invalid="true"]');
    if (invalid) {
      invalid.closest("details")?.setAttribute("open", "");
      invalid.focus();
    }
  }
}
