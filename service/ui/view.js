// A finished job's result: its heatmap (GET /v1/jobs/{id}/view, fetched with the key and shown in a sandboxed
// iframe) and downloads of the result as JSON or CSV.

import { ApiError, download, request } from "./api.js";
import { shortId } from "./dom.js";

const $ = (id) => document.getElementById(id);

export class ResultPanel {
  constructor() {
    this.section = $("result");
    this.frame = $("result-view");
    this.message = $("result-message");
    this.job = null;
    $("close-result").addEventListener("click", () => this.close());
    $("download-json").addEventListener("click", () => this.save("json", "application/json"));
    $("download-csv").addEventListener("click", () => this.save("csv", "text/csv"));
  }

  /** Show `job`'s heatmap; `auto` (a followed job that just finished) leaves focus and scrolling alone. */
  async open(job, { auto = false } = {}) {
    this.job = job;
    const asked = job.request || {};
    $("result-heading").textContent = `Job ${shortId(job.id)} · ${asked.model || ""} · ${asked.method || asked.attribution_method || ""}`;
    this.section.hidden = false;
    this.frame.hidden = true;
    this.message.textContent = "Loading the heatmap…";
    if (!auto) {
      this.section.scrollIntoView({ block: "nearest" });
      $("result-heading").focus({ preventScroll: true });
    }
    let html;
    try {
      const response = await request(`/v1/jobs/${encodeURIComponent(job.id)}/view`, { accept: "text/html" });
      html = await response.text();
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      if (this.job !== job) return;
      const { title, detail } = error.problem;
      this.message.textContent = `The heatmap could not be shown: ${title}${detail ? ` (${detail})` : ""}. `
        + "The result can still be downloaded.";
      return;
    }
    if (this.job !== job) return; // another job was opened meanwhile
    // A fresh frame each time: Chromium may leave a srcdoc loaded into a hidden (display: none) frame blank.
    const frame = this.frame.cloneNode(false);
    frame.title = `Heatmap of job ${shortId(job.id)}`;
    frame.srcdoc = html;
    frame.hidden = false;
    this.frame.replaceWith(frame);
    this.frame = frame;
    this.message.textContent = "";
  }

  close() {
    this.job = null;
    this.section.hidden = true;
    this.frame.hidden = true;
    this.frame.removeAttribute("srcdoc");
  }

  async save(format, accept) {
    if (!this.job) return;
    const id = this.job.id;
    try {
      const path = `/v1/jobs/${encodeURIComponent(id)}/result?format=${format}`;
      await download(path, `seqattr-${id}.${format}`, accept);
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      const { title, detail } = error.problem;
      this.message.textContent = `Download failed: ${title}${detail ? ` (${detail})` : ""}.`;
    }
  }
}
