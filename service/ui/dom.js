// Building DOM nodes from data. Text is always set as text (never parsed as HTML): tokens, inputs and error
// messages come from users and models.

/**
 * `el("button", {type: "button", class: "x", onclick: f}, "Text", child)`: an element with attributes,
 * listeners (`on…` keys) and children (strings become text nodes; null, undefined and false are skipped).
 */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "dataset") Object.assign(node.dataset, value);
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  node.append(...children.flat().filter((child) => child !== null && child !== undefined && child !== false));
  return node;
}

/** The non-blank lines of a textarea, as typed. */
export function lines(text) {
  return text
    .split(/\r?\n/)
    .filter((line) => line.trim() !== "");
}

/** A short, readable id: the first characters of a job id. */
export function shortId(id) {
  return id.slice(0, 8);
}
