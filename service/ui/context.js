// The form's "Context attribution" mode (PECoRe, POST /v1/attribute-context): its own fields, the
// contrastive metrics from the catalogue, and the request body it sends.

import { el } from "./dom.js";

const $ = (id) => document.getElementById(id);

/** Elements shown only in attribution mode (the rest of the form is shared: model, method, arguments). */
const ATTRIBUTION_ONLY = ["inputs-field", "target-mode", "attributed-fn-field", "step-scores-box", "more-options"];

export class ContextMode {
  constructor(form, onChange) {
    this.form = form;
    for (const radio of form.elements["job-kind"]) radio.addEventListener("change", () => onChange());
  }

  get active() {
    return this.form.elements["job-kind"].value === "attribute-context";
  }

  /** The contrastive step functions are the CTI metrics and CCI attributed functions. */
  fillFunctions(functions) {
    const contrastive = functions.filter((fn) => fn.contrastive);
    const options = (preferred) => contrastive.map((fn) =>
      el("option", { value: fn.id, selected: fn.id === preferred }, fn.id));
    $("ctx-metric").replaceChildren(...options("kl_divergence"));
    $("ctx-attributed-fn").replaceChildren(...options("contrast_prob_diff"));
  }

  /** Show the fields of the chosen kind. */
  apply() {
    $("context-fields").hidden = !this.active;
    for (const id of ATTRIBUTION_ONLY) $(id).hidden = this.active;
    $("submit-heading").textContent = this.active ? "New context attribution" : "New attribution";
  }

  /** The request body (`errors` found before sending). */
  body(model, method, args) {
    const text = (id) => $(id).value.trim();
    const body = {
      model, attribution_method: method, input_current_text: text("ctx-input-current"),
      context_sensitivity_metric: $("ctx-metric").value, attributed_fn: $("ctx-attributed-fn").value,
    };
    const optional = { input_context_text: "ctx-input-context", output_context_text: "ctx-output-context",
      output_current_text: "ctx-output-current" };
    for (const [field, id] of Object.entries(optional)) if (text(id)) body[field] = text(id);
    const numbers = { context_sensitivity_std_threshold: "ctx-cti-threshold",
      attribution_std_threshold: "ctx-cci-threshold" };
    for (const [field, id] of Object.entries(numbers)) if ($(id).value !== "") body[field] = Number($(id).value);
    if (Object.keys(args).length > 0) body.method_args = args;
    const errors = body.input_current_text ? [] : [{ loc: ["input_current_text"], msg: "write the input" }];
    return errors.length > 0 ? { errors } : { body };
  }
}
