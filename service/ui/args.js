// A small form for a method's `parameters` JSON schema (GET /v1/methods): numbers, booleans, enums and
// strings get their own control; anything else (unions, lists, objects) is typed as JSON.

import { el } from "./dom.js";

/** What control a property gets: `kind` is enum | boolean | number | string | json. */
function controlKind(property) {
  let base = property;
  let nullable = false;
  if (Array.isArray(property.anyOf)) {
    const variants = property.anyOf.filter((variant) => variant.type !== "null");
    nullable = variants.length < property.anyOf.length;
    if (variants.length !== 1) return { kind: "json", nullable, base };
    base = variants[0];
  }
  if (Array.isArray(base.enum)) return { kind: "enum", nullable, base };
  if (base.type === "boolean") return nullable ? { kind: "enum", nullable, base: { enum: [true, false] } }
    : { kind: "boolean", nullable, base };
  if (base.type === "integer" || base.type === "number") return { kind: "number", nullable, base };
  if (base.type === "string") return { kind: "string", nullable, base };
  return { kind: "json", nullable, base };
}

function hintText(property) {
  const parts = [];
  if (property.description) parts.push(property.description);
  if (property.default !== undefined) parts.push(`Default: ${JSON.stringify(property.default)}.`);
  return parts.join(" ");
}

function control(id, name, property, kind, base, nullable) {
  const common = { id, name, "aria-describedby": `${id}-help`, dataset: { loc: `method_args.${name}` } };
  const fallback = property.default;
  if (kind === "boolean") {
    return el("input", { ...common, type: "checkbox", checked: fallback === true });
  }
  if (kind === "enum") {
    const options = base.enum.map((value) =>
      el("option", { value: JSON.stringify(value), selected: value === fallback }, String(value)));
    if (nullable || fallback === undefined) options.unshift(el("option", { value: "" }, "(not set)"));
    return el("select", common, options);
  }
  if (kind === "number") {
    return el("input", {
      ...common, type: "number", class: "narrow", inputmode: base.type === "integer" ? "numeric" : "decimal",
      step: base.type === "integer" ? "1" : "any", min: base.minimum, max: base.maximum,
      value: typeof fallback === "number" ? fallback : undefined,
    });
  }
  if (kind === "string") {
    return el("input", { ...common, type: "text", spellcheck: "false", value: fallback ?? undefined });
  }
  return el("input", {
    ...common, type: "text", class: "mono", spellcheck: "false",
    placeholder: fallback === undefined ? "JSON" : JSON.stringify(fallback),
  });
}

/** Read one control back: `{send, value}` (`send` is false when it says the default), or `{error}`. */
function readControl(input, kind, fallback) {
  if (kind === "boolean") return { send: input.checked !== fallback, value: input.checked };
  if (kind === "enum") {
    if (input.value === "") return { send: false };
    const value = JSON.parse(input.value);
    return { send: value !== fallback, value };
  }
  const text = input.value.trim();
  if (text === "") return { send: false };
  if (kind === "number") {
    const value = Number(text);
    return { send: value !== fallback, value };
  }
  if (kind === "string") return { send: text !== fallback, value: text };
  try {
    return { send: true, value: JSON.parse(text) };
  } catch {
    return { error: "not valid JSON" };
  }
}

/**
 * Fill `fieldset` with controls for `schema`; returns `read()`, which gives `{args, errors}`: the arguments
 * that differ from their defaults, and client-side errors as problem `errors` items.
 */
export function renderArgs(fieldset, schema) {
  const legend = fieldset.querySelector("legend");
  fieldset.replaceChildren(legend);
  const properties = schema && schema.properties;
  if (!properties) {
    // No property list to build controls from: the whole object as JSON.
    const area = el("textarea", {
      id: "arg-json", class: "mono", rows: 3, spellcheck: "false", dataset: { loc: "method_args" },
      "aria-label": "Method arguments (JSON object)", placeholder: "{}",
    });
    fieldset.append(area);
    return () => {
      const text = area.value.trim();
      if (text === "") return { args: {}, errors: [] };
      try {
        return { args: JSON.parse(text), errors: [] };
      } catch {
        return { args: {}, errors: [{ loc: ["method_args"], msg: "not valid JSON" }] };
      }
    };
  }
  const names = Object.keys(properties);
  if (names.length === 0) {
    fieldset.append(el("p", { class: "hint" }, "This method takes no arguments."));
    return () => ({ args: {}, errors: [] });
  }
  const readers = names.map((name) => {
    const property = properties[name];
    const { kind, nullable, base } = controlKind(property);
    const id = `arg-${name}`;
    const input = control(id, name, property, kind, base, nullable);
    const label = el("label", { for: id }, property.title || name, " ", el("code", {}, name));
    const hint = el("p", { id: `${id}-help`, class: "hint" }, hintText(property));
    const field = kind === "boolean"
      ? el("div", { class: "field check" }, input, label, hint)
      : el("div", { class: "field" }, label, input, hint);
    fieldset.append(field);
    return () => ({ name, ...readControl(input, kind, property.default) });
  });
  return () => {
    const args = {};
    const errors = [];
    for (const read of readers) {
      const { name, send, value, error } = read();
      if (error) errors.push({ loc: ["method_args", name], msg: error });
      else if (send) args[name] = value;
    }
    return { args, errors };
  };
}
