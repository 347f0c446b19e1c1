// The dashboard: wires the submit form, the job list, the result view and the API-key prompt together.

import { ApiError, apiKey, forgetApiKey, onUnauthorized, setApiKey } from "./api.js";
import { BatchList } from "./batches.js";
import { SubmitForm } from "./form.js";
import { JobList } from "./jobs.js";
import { ResultPanel } from "./view.js";

const $ = (id) => document.getElementById(id);

function showBanner(error) {
  const banner = $("banner");
  const { title, detail } = error.problem || { title: "Error", detail: String(error) };
  banner.textContent = `${title}${detail ? `: ${detail}` : ""}`;
  banner.hidden = false;
}

function hideBanner() {
  $("banner").hidden = true;
}

const result = new ResultPanel();
const jobs = new JobList({
  onView: (job, options) => result.open(job, options),
  onError: (error) => (error ? showBanner(error) : hideBanner()),
});
const form = new SubmitForm((job) => jobs.follow(job));
const batches = new BatchList({
  template: () => form.template(),
  onError: (error) => (error ? showBanner(error) : hideBanner()),
});

function showKeyState() {
  $("key-status").hidden = !apiKey();
}

/** Ask for a key: a 401 means there is none or the one kept is wrong (then it is dropped). */
function askForKey(problem) {
  forgetApiKey();
  showKeyState();
  jobs.clear();
  batches.clear();
  result.close();
  const panel = $("key-panel");
  $("key-reason").textContent = problem.detail || "This service needs an API key.";
  if (panel.hidden) {
    panel.hidden = false;
    $("key-input").focus();
  }
}

async function start() {
  hideBanner();
  showKeyState();
  try {
    await Promise.all([form.load(), jobs.refresh(), batches.refresh()]);
  } catch (error) {
    if (!(error instanceof ApiError)) throw error;
    if (error.status !== 401) showBanner(error);
  }
}

onUnauthorized(askForKey);

$("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const key = $("key-input").value.trim();
  if (!key) return;
  setApiKey(key);
  $("key-input").value = "";
  $("key-panel").hidden = true;
  start();
});

$("forget-key").addEventListener("click", () => {
  forgetApiKey();
  jobs.clear();
  batches.clear();
  result.close();
  start();
});

start();
