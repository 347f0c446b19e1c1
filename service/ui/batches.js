// The batches (GET /v1/batches): status, items done, throughput and time left, a Cancel button
// (DELETE /v1/batches/{id}) and the results as JSONL or CSV; refreshed every second while any batch runs.
// The upload form sends a JSONL or CSV file with the main form's model, method and arguments as template.

import { ApiError, download, getJson, request } from "./api.js";
import { el, shortId } from "./dom.js";

const LIST_LIMIT = 10;
const REFRESH_MS = 1000;
const IDLE_REFRESH_MS = 15_000;
const ACTIVE = new Set(["queued", "running"]);

function rate(batch) {
  if (!batch.throughput) return "";
  const left = ACTIVE.has(batch.status) && batch.eta_s !== null ? ` · ~${Math.round(batch.eta_s)} s left` : "";
  return `${batch.throughput.toFixed(2)} items/s${left}`;
}

function failedNote(batch) {
  const failed = batch.counts.failed + batch.counts.canceled;
  return failed > 0 ? el("p", { class: "job-error" }, `${failed} item${failed > 1 ? "s" : ""} without a result`) : null;
}

export class BatchList {
  /** `template()` gives the main form's `{template}` or `{errors}`; `onError(error)` reports a failed call
   * (null: the list loaded again). */
  constructor({ template, onError }) {
    this.body = document.querySelector("#batches tbody");
    this.empty = document.getElementById("batches-empty");
    this.template = template;
    this.onError = onError;
    this.timer = null;
    document.getElementById("refresh-batches").addEventListener("click", () => this.refresh());
    document.getElementById("batch-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.upload();
    });
  }

  async refresh() {
    clearTimeout(this.timer);
    this.timer = null;
    let page;
    try {
      page = await getJson(`/v1/batches?limit=${LIST_LIMIT}`);
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      if (error.status !== 401) this.onError(error);
      return;
    }
    this.onError(null);
    this.render(page.batches);
    const active = page.batches.some((batch) => ACTIVE.has(batch.status));
    if (active || document.visibilityState === "visible") {
      this.timer = setTimeout(() => this.refresh(), active ? REFRESH_MS : IDLE_REFRESH_MS);
    }
  }

  clear() {
    clearTimeout(this.timer);
    this.body.replaceChildren();
    this.empty.hidden = false;
  }

  render(batches) {
    // Rows are rebuilt each time: a batch row holds no input, so nothing is lost but the focused button.
    const focused = document.activeElement?.dataset?.action;
    const focusedId = document.activeElement?.closest?.("#batches tr")?.dataset.batchId;
    this.body.replaceChildren(...batches.map((batch) => this.row(batch)));
    if (focused && focusedId) {
      this.body.querySelector(`tr[data-batch-id="${focusedId}"] [data-action="${focused}"]`)?.focus();
    }
    this.empty.hidden = batches.length > 0;
  }

  row(batch) {
    const short = shortId(batch.id);
    const template = batch.template || {};
    const bar = el("progress", { max: batch.total, value: batch.done, "aria-label": `Progress of batch ${short}` });
    const actions = el("td", { class: "actions", "data-label": "Actions" });
    if (ACTIVE.has(batch.status)) {
      actions.append(el("button", {
        type: "button", class: "secondary danger", dataset: { action: "cancel" },
        "aria-label": `Cancel batch ${short}`, onclick: () => this.cancel(batch),
      }, "Cancel"));
    }
    for (const [format, accept] of [["jsonl", "application/x-ndjson"], ["csv", "text/csv"]]) {
      actions.append(el("button", {
        type: "button", class: "secondary", dataset: { action: format },
        "aria-label": `Download the results of batch ${short} as ${format.toUpperCase()}`,
        onclick: () => this.save(batch, format, accept),
      }, format.toUpperCase()));
    }
    return el("tr", { dataset: { batchId: batch.id, status: batch.status } },
      el("td", { "data-label": "Status" }, el("span", { class: `status status-${batch.status}` }, batch.status),
        failedNote(batch)),
      el("td", { "data-label": "Batch" }, el("code", { title: batch.id }, short)),
      el("td", { "data-label": "Model" }, template.model || ""),
      el("td", { "data-label": "Method" }, template.method || ""),
      el("td", { "data-label": "Items" },
        el("div", { class: "progress" }, bar, el("span", { class: "count" }, `${batch.done}/${batch.total}`))),
      el("td", { "data-label": "Rate", class: "rate" }, rate(batch)),
      actions);
  }

  async cancel(batch) {
    try {
      await request(`/v1/batches/${encodeURIComponent(batch.id)}`, { method: "DELETE" });
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      if (error.status !== 401) this.onError(error);
    }
    await this.refresh();
  }

  async save(batch, format, accept) {
    const path = `/v1/batches/${encodeURIComponent(batch.id)}/results?format=${format}&partial=all`;
    try {
      await download(path, `batch-${shortId(batch.id)}.${format}`, accept);
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      if (error.status !== 401) this.onError(error);
    }
  }

  async upload() {
    const status = document.getElementById("batch-status");
    const file = document.getElementById("batch-file").files[0];
    const inputField = document.getElementById("batch-input-field").value.trim();
    const { template, errors } = this.template();
    if (!file || !inputField || errors) {
      const why = errors ? errors.map((e) => `${e.loc.join(".")}: ${e.msg}`).join("; ")
        : "choose a file and name its input field";
      status.textContent = `Not sent: ${why}.`;
      return;
    }
    const form = new FormData();
    form.append("file", file);
    form.append("input_field", inputField);
    const generated = document.getElementById("batch-generated-field").value.trim();
    if (generated) form.append("generated_field", generated);
    form.append("request", JSON.stringify(template));
    status.textContent = "Uploading…";
    try {
      const batch = await (await request("/v1/batches", { method: "POST", body: form })).json();
      status.textContent = `Submitted batch ${shortId(batch.id)} (${batch.total} items).`;
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      const { title, detail } = error.problem;
      status.textContent = `${title}${detail ? `: ${detail}` : ""}`;
      return;
    }
    await this.refresh();
  }
}
