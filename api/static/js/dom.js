/**
 * DOM helpers. Every string passed here becomes a text node or an attribute value, never
 * markup: task code, output and messages come from strangers, so the page never uses
 * innerHTML.
 */

/** Create an element: h("a", {href: "#/", class: "x"}, "text", childNode, ...). */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  appendAll(el, children);
  return el;
}

/** Append nodes and strings (as text); null, undefined and false are skipped. */
export function appendAll(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
}

/** Replace an element's children with the given nodes and strings. */
export function fill(el, ...children) {
  el.replaceChildren();
  appendAll(el, children);
  return el;
}

/** Set text only when it changed, so screen readers do not re-announce live regions. */
export function setText(el, text) {
  const value = String(text ?? "");
  if (el.textContent !== value) el.textContent = value;
}

export const byId = (id) => document.getElementById(id);
