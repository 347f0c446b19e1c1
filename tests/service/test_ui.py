"""The `/ui` dashboard: its static files over HTTP, and the page itself in Debian's headless chromium
(driven by Playwright) against the real stack: submit from the form, watch the job finish in the list, open
its heatmap, cancel a queued job, ask for an API key and show a refused request's problem.

Screenshots go to a pytest tmp folder; with `SEQATTR_DOCS_SCREENSHOTS=<dir>` the dashboard and the heatmap
are also written there (the README shows them from docs/).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Locator, Page, expect, sync_playwright

from cli.processes import stop
from tests.service.helpers import SENTENCES, UNSERVED_MODEL, assert_problem
from tests.service.stack import stack_env, start_api

CHROMIUM = Path(os.environ.get("SEQATTR_CHROMIUM", "/usr/bin/chromium"))
"""Debian's chromium (Playwright's own browser download is not used)."""

KEY = "ui-test-key-0123456789abcdef"

JOB_TIMEOUT_MS = 60_000
"""A tiny-model job finishes in about a second; the margin covers a busy CI machine."""


# --- The files, over HTTP (no browser needed) ---


def test_ui_files_are_served_with_their_media_types(client: httpx.Client) -> None:
    page = client.get("/ui")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert page.headers["cache-control"] == "no-cache"
    policy = page.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "unsafe-inline" not in policy
    assert "frame-ancestors 'none'" in policy
    assets = re.findall(r'(?:src|href)="(/ui/[^"]+)"', page.text)
    assert sorted(assets) == ["/ui/app.js", "/ui/style.css"]
    kinds = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
    for name in sorted(p.name for p in (Path(__file__).parents[2] / "service" / "ui").iterdir()):
        response = client.get(f"/ui/{name}")
        assert response.status_code == 200, name
        if name != "index.html":
            assert response.headers["content-type"] == kinds[Path(name).suffix]
        assert response.headers["x-content-type-options"] == "nosniff"
        # No build step, nothing from another origin: every fetch and import stays on this service.
        assert not re.search(r"""(?:src=|href=|import\s[^;]*from\s|fetch\()\s*["'`]https?:""", response.text)
    head = client.head("/ui")
    assert head.status_code == 200 and head.content == b""
    # Revalidation by ETag.
    etag = client.get("/ui/app.js").headers["etag"]
    assert client.get("/ui/app.js", headers={"If-None-Match": etag}).status_code == 304
    assert client.get("/ui/app.js", headers={"If-None-Match": '"stale"'}).status_code == 200


def test_ui_serves_nothing_else_and_stays_out_of_the_contract(client: httpx.Client) -> None:
    for path in ("/ui/missing.js", "/ui/..%2Fmain.py", "/ui/%2E%2E%2Froutes%2Fui.py", "/ui/README"):
        assert_problem(client.get(path), 404, "not-found")
    assert client.get("/ui/", follow_redirects=True).url.path == "/ui"
    assert not [path for path in client.get("/openapi.json").json()["paths"] if path.startswith("/ui")]


# --- The page, in chromium ---


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.skip(
            f"chromium is not installed at {CHROMIUM} (apt-get install chromium): browser tests skipped"
        )
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--headless", "--no-sandbox", "--disable-gpu"]
        )
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Screenshots of this module's tests (kept as test artifacts in pytest's tmp folder)."""
    return tmp_path_factory.mktemp("ui-screenshots")


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-GB")
    yield context
    context.close()


class Dashboard:
    """One dashboard tab; uncaught script errors are collected and fail the test."""

    def __init__(self, context: BrowserContext, url: str) -> None:
        self.page: Page = context.new_page()
        self.errors: list[str] = []
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.on(
            "console",
            lambda message: (
                self.errors.append(message.text) if "Content Security Policy" in message.text else None
            ),
        )
        self.page.goto(url + "/ui")

    def fill(self, model: str, method: str, text: str, max_new_tokens: int = 3) -> None:
        page = self.page
        expect(page.locator("#model option")).not_to_have_count(0)
        page.select_option("#model", model)
        page.select_option("#method", method)
        page.fill("#inputs", text)
        page.fill("#max-new-tokens", str(max_new_tokens))

    def submit(self) -> str:
        """Submit the form; the new job's id."""
        page = self.page
        with page.expect_response(lambda r: r.url.endswith("/v1/attributions")) as answer:
            page.click("#submit-button")
        assert answer.value.status == 202, answer.value.text()
        return answer.value.json()["id"]

    def row(self, job_id: str) -> Locator:
        return self.page.locator(f'#jobs tbody tr[data-job-id="{job_id}"]')

    def heatmap_cells(self) -> Locator:
        return self.page.frame_locator("#result-view").locator("td.cell[data-score]")

    def check(self) -> None:
        assert not self.errors, self.errors


def _docs_dir() -> Path | None:
    folder = os.environ.get("SEQATTR_DOCS_SCREENSHOTS")
    if not folder:
        return None
    Path(folder).mkdir(parents=True, exist_ok=True)
    return Path(folder)


@pytest.mark.usefixtures("worker")
def test_submit_watch_and_view_the_heatmap(
    context: BrowserContext, api_url: str, client: httpx.Client, shots: Path
) -> None:
    ui = Dashboard(context, api_url)
    page = ui.page
    ui.fill("tiny-gpt2", "saliency", SENTENCES[0])
    expect(page.locator("#method-help")).to_contain_text("Gradient")
    expect(page.locator("#arg-abs")).to_be_checked()  # the method's boolean argument, at its default
    page.click("#step-scores-box summary")
    page.check("#score-probability")
    expect(page.locator("#step-count")).to_have_text("(probability)")
    # Every visible control is labelled.
    unlabelled = page.eval_on_selector_all(
        "#submit-form input, #submit-form select, #submit-form textarea",
        "els => els.filter(e => e.offsetParent && !e.labels.length && !e.getAttribute('aria-label'))"
        ".map(e => e.id)",
    )
    assert unlabelled == []
    job_id = ui.submit()

    row = ui.row(job_id)
    expect(row).to_have_attribute("data-status", "finished", timeout=JOB_TIMEOUT_MS)
    job = client.get(f"/v1/jobs/{job_id}").json()
    asked = job["request"]
    assert (asked["model"], asked["method"], asked["inputs"]) == ("tiny-gpt2", "saliency", [SENTENCES[0]])
    assert asked["generation_args"]["max_new_tokens"] == 3 and asked["step_scores"] == ["probability"]
    done, total = job["progress"]["done"], job["progress"]["total"]
    assert done == total == 3
    bar = row.locator("progress")
    assert (bar.get_attribute("value"), bar.get_attribute("max")) == ("3", "3")
    expect(row.locator(".count")).to_have_text("3/3")
    expect(row.locator(".status")).to_have_text("finished")

    # A job submitted from the page opens its heatmap once finished; the View button opens it again.
    expect(ui.heatmap_cells().first).to_be_visible(timeout=10_000)
    row.get_by_role("button", name=re.compile("View")).click()
    cells = ui.heatmap_cells()
    expect(cells.first).to_be_visible(timeout=10_000)
    assert cells.count() > 0
    scores = {float(s) for s in cells.evaluate_all("cs => cs.map(c => c.dataset.score)")}
    result = client.get(f"/v1/jobs/{job_id}/result").json()
    stored = {v for column in result["sequences"][0]["target_attributions"] for v in column if v is not None}
    assert scores and scores <= stored
    page.set_viewport_size({"width": 1280, "height": 800})
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(shots / "dashboard.png"))
    page.locator("#result-view").screenshot(path=str(shots / "heatmap-frame.png"))

    # The view on its own page, for the README's picture (keys are off here, so a plain navigation works).
    view = context.new_page()
    view.set_viewport_size({"width": 1000, "height": 600})
    view.goto(f"{api_url}/v1/jobs/{job_id}/view")
    view.screenshot(path=str(shots / "heatmap.png"), full_page=True)

    # Narrow screens: no sideways scrolling, the jobs become cards.
    page.set_viewport_size({"width": 390, "height": 844})
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    page.locator("#result-view").scroll_into_view_if_needed()
    page.screenshot(path=str(shots / "dashboard-narrow-view.png"))
    # Last: after a full-page capture Chromium may show the sandboxed frame blank for a while.
    page.screenshot(path=str(shots / "dashboard-narrow.png"), full_page=True)
    # The view's own script runs in the sandboxed frame (the page's policy allows exactly its hash).
    cells.first.hover()
    expect(page.frame_locator("#result-view").locator("#tip")).to_be_visible()
    docs = _docs_dir()
    if docs is not None:
        shutil.copyfile(shots / "dashboard.png", docs / "dashboard.png")
        shutil.copyfile(shots / "heatmap.png", docs / "heatmap.png")
    ui.check()


def test_forced_text_and_arguments_then_cancel_from_the_list(
    context: BrowserContext, api_url: str, client: httpx.Client, shots: Path
) -> None:
    ui = Dashboard(context, api_url)
    page = ui.page
    # No test worker serves this model: the job stays queued until canceled.
    ui.fill(UNSERVED_MODEL, "integrated_gradients", SENTENCES[1])
    page.select_option("#arg-method", label="riemann_left")  # an enum argument
    page.uncheck("#arg-multiply_by_inputs")  # a boolean one
    page.check("#mode-force")
    expect(page.locator("#max-new-tokens")).to_be_disabled()
    page.fill("#generated-texts", SENTENCES[1] + " Yes.")
    page.click(".advanced summary >> text=More options")
    page.fill("#seed", "7")
    job_id = ui.submit()
    asked = client.get(f"/v1/jobs/{job_id}").json()["request"]
    assert asked["generated_texts"] == [SENTENCES[1] + " Yes."]
    assert asked["seed"] == 7
    assert asked["method_args"]["method"] == "riemann_left"
    assert asked["method_args"]["multiply_by_inputs"] is False
    assert asked["method_args"]["n_steps"] == 50  # left at its default
    row = ui.row(job_id)
    expect(row).to_have_attribute("data-status", "queued")
    expect(row.locator(".status")).to_contain_text("queued")
    ui.page.screenshot(path=str(shots / "queued.png"))
    row.get_by_role("button", name=re.compile("Cancel")).click()
    expect(row).to_have_attribute("data-status", "canceled")
    expect(row.get_by_role("button")).to_have_count(0)
    assert client.get(f"/v1/jobs/{job_id}").json()["status"] == "canceled"
    ui.check()


@pytest.fixture(scope="module")
def keyed_api(redis_url: str, tiny_registry: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A second API process on the same Redis that requires `KEY`."""
    env = stack_env(
        redis_url, tiny_registry, tmp_path_factory.mktemp("ui-keys"), SEQATTR_API_KEYS=f"ui:{KEY}"
    )
    process, url = start_api(env)
    yield url
    stop(process, "API")


@pytest.mark.usefixtures("worker")
def test_api_key_prompt_and_a_refused_request(context: BrowserContext, keyed_api: str, shots: Path) -> None:
    ui = Dashboard(context, keyed_api)
    page = ui.page
    panel = page.locator("#key-panel")
    expect(panel).to_be_visible()
    expect(panel).to_contain_text("an API key is required")
    expect(page.locator("#key-input")).to_be_focused()
    page.screenshot(path=str(shots / "key-prompt.png"))
    page.fill("#key-input", "not-the-key-0123456789")
    page.click("#key-form button[type=submit]")
    expect(panel).to_contain_text("the API key is not valid")
    page.fill("#key-input", KEY)
    page.click("#key-form button[type=submit]")
    expect(panel).to_be_hidden()
    expect(page.locator("#key-status")).to_be_visible()
    storage = page.evaluate(
        "[sessionStorage.getItem('seqattr.apiKey'), localStorage.length, document.cookie]"
    )
    assert storage == [KEY, 0, ""]

    # An out-of-range method argument: the API's 422 detail and errors are shown, and the field is marked.
    ui.fill("tiny-gpt2", "integrated_gradients", SENTENCES[2])
    page.fill("#arg-n_steps", "0")
    body = {
        "model": "tiny-gpt2",
        "method": "integrated_gradients",
        "inputs": [SENTENCES[2]],
        "method_args": {"n_steps": 0},
    }
    with httpx.Client(base_url=keyed_api, headers={"Authorization": f"Bearer {KEY}"}) as http:
        expected = assert_problem(http.post("/v1/attributions", json=body), 422, "validation-error")
    page.click("#submit-button")
    problem = page.locator("#form-problem")
    expect(problem).to_be_visible()
    expect(problem).to_be_focused()
    expect(problem).to_contain_text("(422)")
    expect(problem).to_contain_text(expected["detail"])
    expect(problem.locator("li")).to_contain_text([re.compile(r"method_args\.n_steps: .+")])
    expect(page.locator("#arg-n_steps")).to_have_attribute("aria-invalid", "true")
    page.screenshot(path=str(shots / "problem.png"))

    # Fixed, the same form goes through with the key, and the view is fetched with it too.
    page.fill("#arg-n_steps", "2")
    job_id = ui.submit()
    expect(problem).to_be_hidden()
    expect(ui.row(job_id)).to_have_attribute("data-status", "finished", timeout=JOB_TIMEOUT_MS)
    expect(ui.heatmap_cells().first).to_be_visible(timeout=10_000)

    # Another tab has its own session storage: it asks again. Forgetting the key asks again too.
    other = Dashboard(context, keyed_api)
    expect(other.page.locator("#key-panel")).to_be_visible()
    page.click("#forget-key")
    expect(panel).to_be_visible()
    expect(page.locator("#jobs tbody tr")).to_have_count(0)
    assert page.evaluate("sessionStorage.getItem('seqattr.apiKey')") is None
    ui.check()
    other.check()


@pytest.mark.usefixtures("worker")
def test_context_mode_submits_a_context_job_and_shows_its_view(
    context: BrowserContext, api_url: str, client: httpx.Client, shots: Path
) -> None:
    ui = Dashboard(context, api_url)
    page = ui.page
    expect(page.locator("#model option")).not_to_have_count(0)
    page.check("#kind-context")
    expect(page.locator("#context-fields")).to_be_visible()
    expect(page.locator("#inputs")).to_be_hidden()
    expect(page.locator("#ctx-metric option")).not_to_have_count(0)
    page.select_option("#model", "tiny-gpt2")
    page.select_option("#method", "saliency")
    page.fill("#ctx-input-context", "George was sick yesterday.")
    page.fill("#ctx-input-current", "His colleagues asked him to come")
    page.fill("#ctx-output-current", "to the hospital.")
    page.fill("#ctx-cti-threshold", "0")
    with page.expect_response(lambda r: r.url.endswith("/v1/attribute-context")) as answer:
        page.click("#submit-button")
    assert answer.value.status == 202, answer.value.text()
    job_id = answer.value.json()["id"]

    row = ui.row(job_id)
    expect(row).to_have_attribute("data-status", "finished", timeout=JOB_TIMEOUT_MS)
    expect(row.locator('[data-kind="attribute-context"]')).to_have_text("context · saliency")
    job = client.get(f"/v1/jobs/{job_id}").json()
    assert job["kind"] == "attribute-context"
    assert job["request"]["context_sensitivity_metric"] == "kl_divergence"
    assert job["request"]["context_sensitivity_std_threshold"] == 0
    result = client.get(f"/v1/jobs/{job_id}/result").json()
    frame = page.frame_locator("#result-view")
    selected = frame.locator("p.output-current span.tok.sel")
    expect(selected.first).to_be_visible(timeout=10_000)
    indices = sorted(int(i) for i in selected.evaluate_all("ts => ts.map(t => t.dataset.index)"))
    assert indices == sorted(result["cti_selected"])
    expect(frame.locator("section.cci")).to_have_count(len(result["cti_selected"]))
    page.screenshot(path=str(shots / "dashboard-context.png"))
    ui.check()


@pytest.mark.usefixtures("worker")
def test_batches_are_listed_with_progress_downloaded_uploaded_and_canceled(
    context: BrowserContext, api_url: str, client: httpx.Client, tmp_path: Path
) -> None:
    items = [{"input": f"{SENTENCES[i % len(SENTENCES)]} ({i})"} for i in range(6)]
    created = client.post(
        "/v1/batches",
        json={
            "model": "tiny-gpt2",
            "generation_args": {"max_new_tokens": 3},
            "items": items,
            "chunk_size": 2,
        },
    )
    assert created.status_code == 202, created.text
    batch_id = created.json()["id"]
    ui = Dashboard(context, api_url)
    page = ui.page
    row = page.locator(f'#batches tbody tr[data-batch-id="{batch_id}"]')
    expect(row).to_have_attribute("data-status", "finished", timeout=JOB_TIMEOUT_MS)
    expect(row.locator(".count")).to_have_text("6/6")
    bar = row.locator("progress")
    assert (bar.get_attribute("value"), bar.get_attribute("max")) == ("6", "6")
    expect(row.locator(".rate")).to_contain_text("items/s")
    expect(row.get_by_role("button", name=re.compile("Cancel"))).to_have_count(0)
    with page.expect_download() as saved:
        row.get_by_role("button", name=re.compile("as JSONL")).click()
    served = client.get(f"/v1/batches/{batch_id}/results", params={"partial": "all"}).content
    assert Path(saved.value.path()).read_bytes() == served and served.count(b"\n") == 6

    # The upload form sends a file with the main form's model as template; no worker serves this model, so
    # the batch stays queued until canceled.
    ui.fill(UNSERVED_MODEL, "saliency", "unused: the file gives the inputs")
    dataset = tmp_path / "data.jsonl"
    dataset.write_text('{"text": "Hello there."}\n{"text": "Good morning."}\n{"text": "See you."}\n')
    page.set_input_files("#batch-file", str(dataset))
    with page.expect_response(
        lambda r: r.url.endswith("/v1/batches") and r.request.method == "POST"
    ) as answer:
        page.click("#batch-submit")
    assert answer.value.status == 202, answer.value.text()
    queued = answer.value.json()
    assert (queued["total"], queued["template"]["model"]) == (3, UNSERVED_MODEL)
    assert queued["template"]["generation_args"]["max_new_tokens"] == 3
    expect(page.locator("#batch-status")).to_contain_text("3 items")
    row = page.locator(f'#batches tbody tr[data-batch-id="{queued["id"]}"]')
    expect(row).to_have_attribute("data-status", "queued")
    row.get_by_role("button", name=re.compile("Cancel")).click()
    expect(row).to_have_attribute("data-status", "canceled")
    expect(row.get_by_role("button", name=re.compile("Cancel"))).to_have_count(0)
    assert client.get(f"/v1/batches/{queued['id']}").json()["counts"]["canceled"] == 3
    ui.check()
