// Calls to the Seqattr API: JSON in and out, problem+json errors, and the API key of this browser tab.

const KEY_STORAGE = "seqattr.apiKey";

/** An answer other than 2xx: `status` and the problem body (RFC 9457) when the API sent one. */
export class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

// The key lives in sessionStorage only: it is gone when the tab closes, and never sent as a cookie.
export function apiKey() {
  return sessionStorage.getItem(KEY_STORAGE);
}

export function setApiKey(key) {
  sessionStorage.setItem(KEY_STORAGE, key);
}

export function forgetApiKey() {
  sessionStorage.removeItem(KEY_STORAGE);
}

let unauthorizedHandler = () => {};

/** `handler(problem)` runs on every 401, so the page can ask for a key. */
export function onUnauthorized(handler) {
  unauthorizedHandler = handler;
}

async function problemOf(response) {
  const type = response.headers.get("Content-Type") || "";
  if (type.includes("json")) {
    try {
      return await response.json();
    } catch {
      // fall through: a broken body still has a status
    }
  }
  return { title: response.statusText || `HTTP ${response.status}`, status: response.status, detail: "" };
}

/**
 * Fetch `path` with the key; resolves to the Response when it is 2xx (or 304), throws ApiError otherwise.
 * A network failure throws ApiError with status 0.
 */
export async function request(path, { method = "GET", body, accept = "application/json" } = {}) {
  const headers = { Accept: accept };
  const key = apiKey();
  if (key) headers.Authorization = `Bearer ${key}`;
  const init = { method, headers, cache: "no-store", credentials: "omit" };
  if (body instanceof FormData) {
    init.body = body; // multipart: the browser writes the Content-Type with its boundary
  } else if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (error) {
    throw new ApiError(0, { title: "Service unreachable", detail: `${method} ${path}: ${error.message}` });
  }
  if (response.ok) return response;
  const problem = await problemOf(response);
  if (response.status === 401) unauthorizedHandler(problem);
  throw new ApiError(response.status, problem);
}

export async function getJson(path) {
  return (await request(path)).json();
}

/** Save `path`'s answer as a file (a plain link would not send the key). */
export async function download(path, filename, accept) {
  const blob = await (await request(path, { accept })).blob();
  const url = URL.createObjectURL(blob);
  const link = document.createElement("a");
  link.href = url;
  link.download = filename;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}
