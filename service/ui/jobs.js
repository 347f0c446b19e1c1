// The recent jobs (GET /v1/jobs): status, progress and a Cancel button (DELETE /v1/jobs/{id}); refreshed
// every second while any job is queued or running.

import { ApiError, getJson, request } from "./api.js";
import { el, shortId } from "./dom.js";

const LIST_LIMIT = 20;
const REFRESH_MS = 1000;
const IDLE_REFRESH_MS = 15_000; // jobs submitted elsewhere (curl, the CLI) show up without a click
const ACTIVE = new Set(["queued", "started"]);

function when(iso) {
  const date = new Date(iso);
  const today = date.toDateString() === new Date().toDateString();
  const text = today ? date.toLocaleTimeString() : date.toLocaleString();
  return el("time", { datetime: iso, title: date.toLocaleString() }, text);
}

function statusCell(job) {
  const label = job.status === "queued" && job.position !== null && job.position !== undefined
    ? `queued · #${job.position + 1}` : job.status;
  const badge = el("span", { class: `status status-${job.status}` }, label);
  const cell = el("td", { "data-label": "Status" }, badge);
  if (job.error) {
    cell.append(el("p", { class: "job-error" }, `${job.error.title || "Error"}: ${job.error.detail || ""}`));
  }
  return cell;
}

function progressCell(job) {
  const { done = 0, total = 0 } = job.progress || {};
  const bar = el("progress", { max: Math.max(total, 1), "aria-label": `Progress of job ${shortId(job.id)}` });
  if (total > 0) bar.value = done;
  else if (job.status === "finished") bar.value = 1;
  // else: no value, an indeterminate bar until the worker knows the total.
  const count = el("span", { class: "count" }, total > 0 ? `${done}/${total}` : "");
  return el("td", { "data-label": "Progress" }, el("div", { class: "progress" }, bar, count));
}

export class JobList {
  /** `onView(job, {auto})` opens a finished job's view; `onError(error)` reports a failed call (null: the
   * list loaded again). */
  constructor({ onView, onError }) {
    this.body = document.querySelector("#jobs tbody");
    this.empty = document.getElementById("jobs-empty");
    this.onView = onView;
    this.onError = onError;
    this.timer = null;
    this.running = null;
    this.followed = null;
    this.again = false;
    this.seen = new Map();
    document.getElementById("refresh-jobs").addEventListener("click", () => this.refresh());
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "visible") this.refresh();
    });
  }

  /** Open `job`'s view by itself once it finishes (the job last submitted from this page). */
  follow(job) {
    this.followed = job.id;
    this.refresh();
  }

  /** Reload the list and schedule the next reload (every second while jobs are active). A call during a
   * fetch adds one more fetch after it. */
  refresh() {
    if (this.running) {
      this.again = true; // the fetch in flight may predate what the caller wants to see
      return this.running;
    }
    this.running = (async () => {
      do {
        this.again = false;
        await this.load();
      } while (this.again);
    })().finally(() => {
      this.running = null;
    });
    return this.running;
  }

  async load() {
    clearTimeout(this.timer);
    this.timer = null;
    let page;
    try {
      page = await getJson(`/v1/jobs?limit=${LIST_LIMIT}`);
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      if (error.status !== 401) this.onError(error);
      return;
    }
    this.onError(null);
    this.render(page.jobs);
    const active = page.jobs.some((job) => ACTIVE.has(job.status));
    if (active || document.visibilityState === "visible") {
      this.timer = setTimeout(() => this.refresh(), active ? REFRESH_MS : IDLE_REFRESH_MS);
    }
    const followed = page.jobs.find((job) => job.id === this.followed);
    if (followed && !ACTIVE.has(followed.status)) {
      this.followed = null;
      if (followed.status === "finished") this.onView(followed, { auto: true });
    }
  }

  clear() {
    clearTimeout(this.timer);
    this.seen.clear();
    this.followed = null;
    this.body.replaceChildren();
    this.empty.hidden = false;
  }

  /** Rows are rebuilt only when their job changed, so focus and hover stay put between refreshes. */
  render(jobs) {
    const rows = jobs.map((job) => {
      const signature = JSON.stringify([job.status, job.progress, job.position, job.error]);
      const known = this.seen.get(job.id);
      if (known && known.signature === signature) return known.row;
      const row = this.row(job);
      if (known) {
        const active = document.activeElement;
        const focused = known.row.contains(active) ? active.dataset.action : null;
        known.row.replaceWith(row);
        if (focused) row.querySelector(`[data-action="${focused}"]`)?.focus();
      }
      this.seen.set(job.id, { signature, row });
      return row;
    });
    const ids = new Set(jobs.map((job) => job.id));
    for (const [id, { row }] of this.seen) {
      if (!ids.has(id)) {
        row.remove();
        this.seen.delete(id);
      }
    }
    rows.forEach((row, index) => {
      if (this.body.children[index] !== row) this.body.insertBefore(row, this.body.children[index] || null);
    });
    this.empty.hidden = jobs.length > 0;
  }

  row(job) {
    const request = job.request || {};
    const actions = el("td", { class: "actions", "data-label": "Actions" });
    if (ACTIVE.has(job.status)) {
      actions.append(el("button", {
        type: "button", class: "secondary danger", dataset: { action: "cancel" },
        "aria-label": `Cancel job ${shortId(job.id)}`, onclick: () => this.cancel(job),
      }, "Cancel"));
    } else if (job.status === "finished") {
      actions.append(el("button", {
        type: "button", dataset: { action: "view" }, "aria-label": `View job ${shortId(job.id)}`,
        onclick: () => this.onView(job),
      }, "View"));
    }
    return el("tr", { dataset: { jobId: job.id, status: job.status } },
      statusCell(job),
      el("td", { "data-label": "Job" }, el("code", { title: job.id }, shortId(job.id))),
      el("td", { "data-label": "Model" }, request.model || ""),
      el("td", { "data-label": "Method", dataset: { kind: job.kind } },
        job.kind === "attribute-context" ? `context · ${request.attribution_method || ""}` : request.method || ""),
      el("td", { "data-label": "Created" }, when(job.created_at)),
      progressCell(job),
      actions);
  }

  async cancel(job) {
    try {
      await request(`/v1/jobs/${encodeURIComponent(job.id)}`, { method: "DELETE" });
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      if (error.status !== 401) this.onError(error);
    }
    await this.refresh();
  }
}
