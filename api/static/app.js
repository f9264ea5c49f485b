/**
 * The taskyard dashboard: wires the live task store to the views and routes between them.
 *
 * Routes live in the URL fragment, so the server serves one page and a reload or a shared
 * link opens the same view:
 *   #/            tasks and capacity        #/submit     the submit form
 *   #/tasks/<id>  one task, followed live   #/admin      capacity, queue, tokens, resets
 *
 * The page talks only to the public REST API and GET /watch (see js/api.js), with the tab's
 * token (js/auth.js). While the API asks for a token, the sign-in view replaces every other.
 */

import { AdminView } from "./js/admin.js";
import { auth } from "./js/auth.js";
import { CapacityView } from "./js/capacity.js";
import { byId, setText } from "./js/dom.js";
import { SignIn } from "./js/signin.js";
import { TaskStore } from "./js/store.js";
import { SubmitForm } from "./js/submit.js";
import { TaskTable } from "./js/table.js";
import { TaskPage } from "./js/taskpage.js";
import { Watch } from "./js/watch.js";

const store = new TaskStore();
const table = new TaskTable(store);
const capacity = new CapacityView(store);
const taskPage = new TaskPage(store);
const admin = new AdminView();
const signIn = new SignIn();
const submitForm = new SubmitForm(store, (hash) => { location.hash = hash; });

const watch = new Watch({
  onTransition: (event) => store.applyTransition(event),
  onRelist: () => store.relist(),
  onStatus: showConnection,
});

function showConnection(state, text) {
  byId("connection").dataset.state = state;
  setText(byId("connection-text"), text);
}

auth.addEventListener("change", (event) => {
  if (auth.required) showConnection("signin", "sign in required");
  if (event.detail.tokenChanged) {
    // Another caller may see other tasks: start over with what this one sees.
    store.clear();
    watch.restart();
  }
  capacity.refresh();
  route();
});

/** "#/tasks/abc" -> {view: "task", id: "abc"}; anything unknown shows the task list. */
function parseRoute(hash) {
  const path = hash.replace(/^#/, "");
  const task = /^\/tasks\/([^/]+)$/.exec(path);
  if (task) return { view: "task", id: decodeURIComponent(task[1]) };
  if (path === "/submit") return { view: "submit" };
  if (path === "/admin") return { view: "admin" };
  return { view: "tasks" };
}

let firstRoute = true;

function route() {
  const { view, id } = parseRoute(location.hash);
  signIn.render();
  for (const section of document.querySelectorAll("[data-view]")) {
    section.hidden = auth.required || section.dataset.view !== view;
  }
  for (const link of document.querySelectorAll("nav [data-route]")) {
    if (link.dataset.route === view) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  if (view === "task") taskPage.show(id);
  else taskPage.hide();
  if (view === "submit" && !auth.required) submitForm.loadRuntimes();
  if (view === "admin") admin.show();
  else admin.hide();
  document.title = `${{ tasks: "Tasks", submit: "New task", task: "Task", admin: "Admin" }[view]}`
    + " · taskyard";
  // Move focus to the new view's heading so screen readers announce the change; not on
  // the first load, where the browser's own focus handling is what people expect.
  const shown = auth.required ? "#view-signin" : `[data-view="${view}"]`;
  if (!firstRoute) document.querySelector(`${shown} h1`)?.focus();
  firstRoute = false;
}

window.addEventListener("hashchange", route);
route();
watch.start();
capacity.start();
setInterval(() => {
  table.tick();
  taskPage.tick();
}, 1000);
