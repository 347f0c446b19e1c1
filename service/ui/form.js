// The submit form: its choices come from the catalogue (GET /v1/models, /v1/methods, /v1/step-functions),
// it posts to POST /v1/attributions and shows a refused request's problem next to the fields.

import { ApiError, getJson, request } from "./api.js";
import { renderArgs } from "./args.js";
import { el, lines, shortId } from "./dom.js";
import { ContextMode } from "./context.js";

const PREFERRED_METHOD = "saliency";
const PREFERRED_FUNCTION = "probability";

const $ = (id) => document.getElementById(id);

export class SubmitForm {
  /** `onSubmitted(job)` runs after a 202. */
  constructor(onSubmitted) {
    this.form = $("submit-form");
    this.problemBox = $("form-problem");
    this.onSubmitted = onSubmitted;
    this.models = new Map();
    this.methods = new Map();
    this.functions = new Map();
    this.readArgs = () => ({ args: {}, errors: [] });
    this.loaded = false;
    this.context = new ContextMode(this.form, () => this.context.apply());
    $("method").addEventListener("change", () => this.methodChanged());
    $("model").addEventListener("change", () => this.modelChanged());
    $("attributed-fn").addEventListener("change", () => this.functionChanged());
    for (const radio of this.form.elements["target-mode"]) {
      radio.addEventListener("change", () => this.modeChanged());
    }
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.submit();
    });
  }

  /** Fill the choices from the catalogue (once; again after a failure). */
  async load() {
    if (this.loaded) return;
    const [models, methods, functions] = await Promise.all([
      getJson("/v1/models"), getJson("/v1/methods"), getJson("/v1/step-functions"),
    ]);
    this.fillModels(models.models);
    this.fillMethods(methods.methods);
    this.fillFunctions(functions.step_functions);
    this.context.fillFunctions(functions.step_functions);
    this.context.apply();
    this.loaded = true;
  }

  fillModels(models) {
    this.models = new Map(models.map((model) => [model.id, model]));
    $("model").replaceChildren(...models.map((model) =>
      el("option", { value: model.id, selected: model.default }, model.id)));
    this.modelChanged();
  }

  fillMethods(methods) {
    this.methods = new Map(methods.map((method) => [method.id, method]));
    const families = new Map();
    for (const method of methods) {
      if (!families.has(method.family)) families.set(method.family, []);
      families.get(method.family).push(
        el("option", { value: method.id, selected: method.id === PREFERRED_METHOD }, method.id));
    }
    $("method").replaceChildren(...[...families].map(([family, options]) =>
      el("optgroup", { label: family }, options)));
    this.methodChanged();
  }

  fillFunctions(functions) {
    this.functions = new Map(functions.map((fn) => [fn.id, fn]));
    $("attributed-fn").replaceChildren(...functions.filter((fn) => fn.attributable).map((fn) =>
      el("option", { value: fn.id, selected: fn.id === PREFERRED_FUNCTION }, fn.id)));
    const boxes = functions.map((fn) => {
      const id = `score-${fn.id}`;
      return el("div", { class: "check" },
        el("input", {
          type: "checkbox", id, name: "step_scores", value: fn.id, "aria-describedby": `${id}-help`,
        }),
        el("label", { for: id }, fn.id, fn.contrastive ? el("span", { class: "tag" }, "contrastive") : null),
        el("p", { id: `${id}-help`, class: "hint" }, fn.description));
    });
    const fieldset = $("step-scores");
    fieldset.replaceChildren(fieldset.querySelector("legend"), ...boxes);
    fieldset.addEventListener("change", () => this.scoresChanged());
    this.functionChanged();
    this.scoresChanged();
  }

  chosenScores() {
    return [...this.form.querySelectorAll("input[name=step_scores]:checked")].map((box) => box.value);
  }

  scoresChanged() {
    const chosen = this.chosenScores();
    $("step-count").textContent = chosen.length ? `(${chosen.join(", ")})` : "(none)";
  }

  modelChanged() {
    const model = this.models.get($("model").value);
    if (!model) return;
    const kinds = { true: "encoder-decoder", false: "decoder-only", null: "" };
    const kind = kinds[String(model.is_encoder_decoder)] ?? "";
    $("model-help").textContent = [model.description, kind].filter(Boolean).join(" · ");
  }

  methodChanged() {
    const method = this.methods.get($("method").value);
    if (!method) return;
    const help = $("method-help");
    help.replaceChildren(`${method.description} (${method.family})`);
    if (method.reference) {
      const link = { href: method.reference, target: "_blank", rel: "noopener noreferrer" };
      help.append(" ", el("a", link, "Reference"));
    }
    this.readArgs = renderArgs($("method-args"), method.parameters);
    const attributed = $("attributed-fn");
    attributed.disabled = method.uses_attributed_fn === false;
    this.functionChanged();
  }

  functionChanged() {
    const select = $("attributed-fn");
    const fn = this.functions.get(select.value);
    $("attributed-fn-help").textContent = select.disabled ? "Not used by this method."
      : fn ? fn.description : "";
  }

  modeChanged() {
    const forced = this.form.elements["target-mode"].value === "force";
    $("generated-field").hidden = !forced;
    $("max-new-tokens").disabled = forced;
  }

  /** The request body, or `{errors}` found before sending. */
  body() {
    if (this.context.active) {
      const { args, errors } = this.readArgs();
      if (errors.length > 0) return { errors };
      return this.context.body($("model").value, $("method").value, args);
    }
    const body = { model: $("model").value, method: $("method").value, inputs: lines($("inputs").value) };
    const errors = [];
    if (body.inputs.length === 0) errors.push({ loc: ["inputs"], msg: "write at least one input" });
    if (this.form.elements["target-mode"].value === "force") {
      body.generated_texts = lines($("generated-texts").value);
    } else if ($("max-new-tokens").value !== "") {
      body.generation_args = { max_new_tokens: Number($("max-new-tokens").value) };
    }
    if (!$("attributed-fn").disabled) body.attributed_fn = $("attributed-fn").value;
    body.step_scores = this.chosenScores();
    const { args, errors: argErrors } = this.readArgs();
    errors.push(...argErrors);
    if (Object.keys(args).length > 0) body.method_args = args;
    const contrasts = lines($("contrast-targets").value);
    if (contrasts.length > 0) body.contrast_targets = contrasts;
    if ($("seed").value !== "") body.seed = Number($("seed").value);
    return errors.length > 0 ? { errors } : { body };
  }

  /** The fields a batch shares with this form (model, method, arguments, step scores...), or `{errors}`. */
  template() {
    if (this.context.active) {
      return { errors: [{ loc: ["job"], msg: "a batch runs attributions: choose Attribution above" }] };
    }
    const template = { model: $("model").value, method: $("method").value };
    if (this.form.elements["target-mode"].value !== "force" && $("max-new-tokens").value !== "") {
      template.generation_args = { max_new_tokens: Number($("max-new-tokens").value) };
    }
    if (!$("attributed-fn").disabled) template.attributed_fn = $("attributed-fn").value;
    template.step_scores = this.chosenScores();
    const { args, errors } = this.readArgs();
    if (Object.keys(args).length > 0) template.method_args = args;
    if ($("seed").value !== "") template.seed = Number($("seed").value);
    return errors.length > 0 ? { errors } : { template };
  }

  async submit() {
    const button = $("submit-button");
    const status = $("submit-status");
    this.clearProblem();
    const { body, errors } = this.body();
    if (errors) {
      this.showProblem({ title: "Check the form", detail: "Some fields need a fix before sending.", errors });
      return;
    }
    button.disabled = true;
    status.textContent = "Submitting…";
    try {
      const path = this.context.active ? "/v1/attribute-context" : "/v1/attributions";
      const job = await (await request(path, { method: "POST", body })).json();
      status.textContent = `Submitted job ${shortId(job.id)}.`;
      this.onSubmitted(job);
    } catch (error) {
      status.textContent = "";
      if (!(error instanceof ApiError)) throw error;
      this.showProblem(error.problem, error.status);
    } finally {
      button.disabled = false;
    }
  }

  clearProblem() {
    this.problemBox.hidden = true;
    this.problemBox.replaceChildren();
    for (const node of this.form.querySelectorAll("[aria-invalid]")) node.removeAttribute("aria-invalid");
  }

  /** A problem's title, detail and each `errors` item (with the field it is about marked invalid). */
  showProblem(problem, status) {
    const title = status ? `${problem.title || "Error"} (${status})` : problem.title || "Error";
    const items = (problem.errors || []).map((item) => {
      const loc = (item.loc || []).filter((part, index) => !(index === 0 && part === "body"));
      this.markInvalid(loc);
      return el("li", {}, el("code", {}, loc.join(".") || "request"), ": ", item.msg);
    });
    const extra = Array.isArray(problem.available)
      ? el("p", {}, "Available: ", problem.available.join(", ")) : null;
    const parts = [el("h3", {}, title), problem.detail ? el("p", { class: "detail" }, problem.detail) : null,
      extra, items.length ? el("ul", {}, items) : null];
    this.problemBox.replaceChildren(...parts.filter(Boolean));
    this.problemBox.hidden = false;
    this.problemBox.focus();
  }

  /** Mark the control whose `data-loc` is the longest prefix of `loc` (e.g. `inputs.0` marks the inputs). */
  markInvalid(loc) {
    for (let end = loc.length; end > 0; end--) {
      const key = loc.slice(0, end).join(".");
      const target = this.form.querySelector(`[data-loc="${CSS.escape(key)}"]`);
      if (target) {
        target.setAttribute("aria-invalid", "true");
        return;
      }
    }
  }
}
