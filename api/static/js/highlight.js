/**
 * Python syntax highlighting for the task page: a small tokenizer that turns code into
 * <span> nodes whose text is set with textContent, so the code is never parsed as HTML.
 * It colours comments, strings, numbers, keywords, builtins, decorators and the names that
 * `def` and `class` introduce; everything else stays plain text.
 */

import { h } from "./dom.js";

const KEYWORDS = new Set(("False None True and as assert async await break class continue " +
  "def del elif else except finally for from global if import in is lambda nonlocal not or " +
  "pass raise return try while with yield match case").split(" "));
const BUILTINS = new Set(("abs all any bool bytes dict enumerate Exception filter float " +
  "format input int isinstance iter len list map max min next object open print range repr " +
  "reversed round set sorted str sum super tuple type zip").split(" "));

// One alternative per token kind, tried at each position in this order. An unterminated
// string runs to the end of its line (or of the code, for triple quotes), as Python reads it.
const TOKEN = new RegExp([
  String.raw`(?<comment>#[^\n]*)`,
  String.raw`(?<string>(?:[rRbBuUfF]{1,2})?(?:"""[\s\S]*?(?:"""|$)|'''[\s\S]*?(?:'''|$)|"(?:[^"\\\n]|\\.)*"?|'(?:[^'\\\n]|\\.)*'?))`,
  String.raw`(?<number>\b(?:0[xXoObB][0-9a-fA-F_]+|\d[\d_]*(?:\.\d*)?(?:[eE][+-]?\d+)?j?)|\.\d+\b)`,
  String.raw`(?<decorator>@[A-Za-z_][\w.]*)`,
  String.raw`(?<name>[A-Za-z_]\w*)`,
].join("|"), "g");

/** Split code into [kind, text] pairs; kind is null for plain text. */
export function tokenize(code) {
  const tokens = [];
  const push = (kind, text) => {
    const previous = tokens[tokens.length - 1];
    if (kind === null && previous && previous[0] === null) previous[1] += text;
    else tokens.push([kind, text]);
  };
  let last = 0;
  let previousName = "";
  for (const match of code.matchAll(TOKEN)) {
    if (match.index > last) push(null, code.slice(last, match.index));
    const text = match[0];
    push(kindOf(match.groups, text, previousName), text);
    previousName = match.groups.name ? text : "";
    last = match.index + text.length;
  }
  if (last < code.length) push(null, code.slice(last));
  return tokens;
}

function kindOf(groups, text, previousName) {
  if (groups.comment) return "comment";
  if (groups.string) return "string";
  if (groups.number) return "number";
  if (groups.decorator) return "decorator";
  if (KEYWORDS.has(text)) return "keyword";
  if (previousName === "def" || previousName === "class") return "definition";
  if (BUILTINS.has(text)) return "builtin";
  return null;
}

/** The code as a list of nodes for a <code> element. */
export function highlight(code) {
  return tokenize(code).map(([kind, text]) =>
    kind ? h("span", { class: `tok-${kind}` }, text) : document.createTextNode(text));
}
