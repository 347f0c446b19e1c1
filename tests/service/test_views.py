"""`GET /v1/jobs/{id}/view` and `/heatmap.png|svg` on the real stack: the page read back with the stdlib's
HTML parser and compared with the JSON result cell by cell, escaping, no fetches, the contrastive token diff,
the images decoded, `?sequence=`, `links.view`, and the problems of jobs without a result."""

from __future__ import annotations

import io
import math
import struct
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
from matplotlib.image import imread
from redis import Redis

from cli.processes import stop
from service.views.heatmap import sequence_heatmap
from service.views.heatmap_image import render_image
from service.views.html_view import render_html
from tests.service.helpers import assert_problem, queued_request, submit
from tests.service.stack import WorkerProcess, flush_jobs, stack_env, start_api

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

REQUESTS: dict[str, dict[str, Any]] = {
    "decoder": {
        "model": "tiny-gpt2",
        "inputs": ["Hello world, this is a test.", "George was sick yesterday."],
        "generation_args": {"max_new_tokens": 3},
        "step_scores": ["probability"],
    },
    "seq2seq": {
        "model": "tiny-t5",
        "inputs": ["The cat sat on the mat."],
        "generation_args": {"max_new_tokens": 4},
        "attribute_target": True,
        "step_scores": ["probability", "entropy"],
    },
    # Forced targets that differ from the contrast in one word: one marked column among unmarked ones.
    "contrast": {
        "model": "tiny-gpt2",
        "inputs": ["The cat sat"],
        "generated_texts": ["The cat sat on the mat."],
        "attributed_fn": "contrast_prob_diff",
        "contrast_targets": ["The cat sat on a mat."],
        "step_scores": ["contrast_prob_diff"],
    },
    "granular": {
        "model": "tiny-gpt2",
        "inputs": ["George was sick yesterday."],
        "generation_args": {"max_new_tokens": 2},
        "aggregation": {"granular": True},
    },
}


@dataclass
class ParsedRow:
    attrs: dict[str, str | None]
    label: str | None = None
    cells: list[dict[str, str | None]] = field(default_factory=list)


@dataclass
class ParsedSequence:
    index: int
    columns: list[dict[str, str | None]] = field(default_factory=list)
    rows: list[ParsedRow] = field(default_factory=list)
    """Heatmap rows (source, then target) and step-score rows, in page order."""


class ViewParser(HTMLParser):
    """Collects each section's column headers, rows and cells, and every element and URL-bearing attribute."""

    def __init__(self) -> None:
        super().__init__()
        self.sequences: list[ParsedSequence] = []
        self.tags: list[str] = []
        self.urls: list[str] = []
        self.scripts = 0
        self.text: list[str] = []
        self._row: ParsedRow | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        self.tags.append(tag)
        self.scripts += tag == "script"
        self.urls += [v or "" for k, v in attrs if k in ("src", "href", "action", "srcset", "poster", "data")]
        classes = (found.get("class") or "").split()
        if tag == "section" and "sequence" in classes:
            self.sequences.append(ParsedSequence(int(found["data-sequence"] or -1)))
        elif tag == "th" and "col" in classes:
            self.sequences[-1].columns.append(found)
        elif tag == "tr" and ("data-side" in found or "data-step-score" in found):
            self._row = ParsedRow(found)
            self.sequences[-1].rows.append(self._row)
        elif tag == "th" and self._row is not None and self._row.label is None:
            self._row.label = found["data-label"]
        elif tag == "td" and self._row is not None:
            self._row.cells.append(found)

    def handle_endtag(self, tag: str) -> None:
        if tag == "tr":
            self._row = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse_view(page: str) -> ViewParser:
    parser = ViewParser()
    parser.feed(page)
    parser.close()
    return parser


def _score(cell: dict[str, str | None]) -> float | None:
    """A cell's score; None for a null cell (class `na`, no `data-score`)."""
    if "na" in (cell.get("class") or "").split():
        assert "data-score" not in cell
        return None
    return float(cell["data-score"] or "nan")


@dataclass(frozen=True)
class ViewJobs:
    results: dict[str, dict[str, Any]]
    stored_sizes: dict[str, int]
    """Bytes of each stored JSON result."""
    queued_id: str


@pytest.fixture(autouse=True, name="clean_redis")
def keep_module_jobs() -> Iterator[None]:
    """The module's jobs live for the whole module (see `view_jobs`)."""
    yield


@pytest.fixture(scope="module")
def view_jobs(api_url: str, worker_process: WorkerProcess, redis_client: Redis) -> Iterator[ViewJobs]:
    flush_jobs(redis_client)
    worker_process.ensure()
    with httpx.Client(base_url=api_url, timeout=60) as client:
        queued = submit(client, queued_request())
        ids = {name: submit(client, body)["id"] for name, body in REQUESTS.items()}
        results, sizes = {}, {}
        for name, job_id in ids.items():
            job = client.get(f"/v1/jobs/{job_id}", params={"wait": 20}).json()
            assert job["status"] == "finished", job
            response = client.get(f"/v1/jobs/{job_id}/result")
            results[name], sizes[name] = response.json(), len(response.content)
        assert queued["links"]["view"] is None
    yield ViewJobs(results, sizes, queued["id"])
    flush_jobs(redis_client)


def _view(client: httpx.Client, job_id: str) -> str:
    response = client.get(f"/v1/jobs/{job_id}/view")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    return response.text


def assert_view_matches(page: str, result: dict[str, Any]) -> ViewParser:
    """Each sequence's columns, rows (side, position, token) and cells (exact scores, nulls) and step-score
    rows are the result's, and the page has no heatmap cell more."""
    parsed = parse_view(page)
    assert [s.index for s in parsed.sequences] == list(range(len(result["sequences"])))
    cells = 0
    for parsed_seq, seq in zip(parsed.sequences, result["sequences"], strict=True):
        start = seq["attr_pos_start"]
        width = seq["attr_pos_end"] - start
        assert [c["data-position"] for c in parsed_seq.columns] == [str(start + j) for j in range(width)]
        expected = []
        for side in ("source", "target"):
            for position, row in enumerate(seq[f"{side}_attributions"] or []):
                expected.append((side, position, seq[side][position]["token"], row))
        heat_rows = [r for r in parsed_seq.rows if "data-side" in r.attrs]
        assert len(heat_rows) == len(expected)
        for got, (side, position, token, row) in zip(heat_rows, expected, strict=True):
            assert (got.attrs["data-side"], got.attrs["data-position"], got.label) == (
                side,
                str(position),
                token,
            )
            assert all("cell" in (c.get("class") or "").split() for c in got.cells)
            assert [_score(c) for c in got.cells] == row  # exact: data-score is the float's repr
            cells += len(got.cells)
        step_rows = {r.attrs["data-step-score"]: r for r in parsed_seq.rows if "data-step-score" in r.attrs}
        assert list(step_rows) == list(seq["step_scores"])
        for name, values in seq["step_scores"].items():
            assert [_score(c) for c in step_rows[name].cells] == values
    assert cells > 0 and cells == page.count('<td class="cell ')
    return parsed


@pytest.mark.parametrize("name", ["decoder", "seq2seq"])
def test_view_has_one_cell_per_row_and_step_with_its_score(
    client: httpx.Client, view_jobs: ViewJobs, name: str
) -> None:
    result = view_jobs.results[name]
    parsed = assert_view_matches(_view(client, result["id"]), result)
    sides = {r.attrs["data-side"] for s in parsed.sequences for r in s.rows if "data-side" in r.attrs}
    assert sides == ({"source", "target"} if name == "seq2seq" else {"target"})
    text = "".join(parsed.text)
    for needle in (result["model"]["id"], result["method"], result["attributed_fn"], result["id"]):
        assert needle in text
    # The tiny tokenizers are word level with SentencePiece's '▁': the text has a space before each word,
    # which decoding one token alone drops; special tokens ('</s>') are left out.
    generated = " ".join(
        t["text"]
        for t in result["sequences"][0]["target"][result["sequences"][0]["attr_pos_start"] :]
        if not t["token"].startswith("<")
    )
    assert generated.strip() and generated in text


def test_view_fetches_nothing(client: httpx.Client, view_jobs: ViewJobs) -> None:
    response = client.get(f"/v1/jobs/{view_jobs.results['seq2seq']['id']}/view")
    parsed = parse_view(response.text)
    assert parsed.urls == []
    assert not {"link", "img", "iframe", "object", "embed", "base", "a"} & set(parsed.tags)
    assert parsed.scripts == 1
    for needle in ("http://", "https://", "url(", "@import", "//"):
        assert needle not in response.text.replace("<!DOCTYPE", "")
    csp = response.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "unsafe-inline" not in csp


def test_contrastive_view_marks_the_differing_tokens(client: httpx.Client, view_jobs: ViewJobs) -> None:
    result = view_jobs.results["contrast"]
    parsed = assert_view_matches(_view(client, result["id"]), result)
    [seq] = result["sequences"]
    start, contrast = seq["attr_pos_start"], seq["contrast_target"]
    differing = {
        j: contrast[p]["token"]
        for j, p in enumerate(seq["contrast_positions"])
        if contrast[p]["id"] != seq["target"][start + j]["id"]
    }
    assert 0 < len(differing) < len(seq["contrast_positions"])
    columns = parsed.sequences[0].columns
    marked = {
        j: c["data-contrast"] for j, c in enumerate(columns) if "diff" in (c.get("class") or "").split()
    }
    assert marked == differing
    for j, column in enumerate(columns):
        token = seq["target"][start + j]["token"]
        assert column["data-label"] == (f"{differing[j]} → {token}" if j in differing else token)


def test_granular_view_shows_the_l2_norm_of_each_cell(client: httpx.Client, view_jobs: ViewJobs) -> None:
    result = view_jobs.results["granular"]
    page = _view(client, result["id"])
    parsed = parse_view(page)
    assert "L2 norm" in "".join(parsed.text)
    [seq] = result["sequences"]
    rows = [r for r in parsed.sequences[0].rows if "data-side" in r.attrs]
    assert len(rows) == len(seq["target_attributions"])
    for row, cells in zip(rows, seq["target_attributions"], strict=True):
        for got, cell in zip(row.cells, cells, strict=True):
            if cell is None:
                assert _score(got) is None
            else:
                assert isinstance(cell, list) and len(cell) > 1
                norm = math.sqrt(sum(v * v for v in cell if v is not None))
                assert _score(got) == pytest.approx(norm, rel=1e-12)


SVG = "{http://www.w3.org/2000/svg}"


def _svg_texts(svg: bytes) -> set[str]:
    return {"".join(e.itertext()) for e in ET.fromstring(svg).iter(SVG + "text")}


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_png_and_svg_heatmaps(client: httpx.Client, view_jobs: ViewJobs) -> None:
    job_id = view_jobs.results["seq2seq"]["id"]
    png = client.get(f"/v1/jobs/{job_id}/heatmap.png")
    assert png.status_code == 200, png.text
    assert png.headers["content-type"] == "image/png"
    width, height = _png_size(png.content)
    pixels = imread(io.BytesIO(png.content), format="png")
    assert pixels.shape[:2] == (height, width) and width >= 400 and height >= 300
    colours = np.unique(pixels[..., :3].reshape(-1, 3), axis=0)
    assert len(colours) > 20  # coloured cells and text, not a blank canvas
    svg = client.get(f"/v1/jobs/{job_id}/heatmap.svg")
    assert svg.status_code == 200, svg.text
    assert svg.headers["content-type"] == "image/svg+xml"
    assert ET.fromstring(svg.content).tag == SVG + "svg"
    texts = _svg_texts(svg.content)
    [seq] = view_jobs.results["seq2seq"]["sequences"]
    assert {t["token"] for t in seq["source"]} <= texts  # token labels on the rows
    assert set(seq["step_scores"]) <= texts
    assert "default-src 'none'" in svg.headers["content-security-policy"]


def test_sequence_chooses_the_input_and_out_of_range_is_a_422(
    client: httpx.Client, view_jobs: ViewJobs
) -> None:
    job_id = view_jobs.results["decoder"]["id"]
    first = client.get(f"/v1/jobs/{job_id}/heatmap.png").content
    assert client.get(f"/v1/jobs/{job_id}/heatmap.png", params={"sequence": 0}).content == first
    second = client.get(f"/v1/jobs/{job_id}/heatmap.png", params={"sequence": 1})
    assert second.status_code == 200 and second.content[:8] == PNG_SIGNATURE and second.content != first
    for k, seq in enumerate(view_jobs.results["decoder"]["sequences"]):
        svg = client.get(f"/v1/jobs/{job_id}/heatmap.svg", params={"sequence": k})
        assert {t["token"] for t in seq["target"]} <= _svg_texts(svg.content)
    for fmt in ("png", "svg"):
        problem = assert_problem(
            client.get(f"/v1/jobs/{job_id}/heatmap.{fmt}", params={"sequence": 2}), 422, "invalid-request"
        )
        assert problem["sequences"] == 2 and "2 sequences" in problem["detail"]
    assert_problem(
        client.get(f"/v1/jobs/{job_id}/heatmap.png", params={"sequence": -1}), 422, "validation-error"
    )


def test_links_view_once_finished_and_409_before(client: httpx.Client, view_jobs: ViewJobs) -> None:
    finished = view_jobs.results["decoder"]["id"]
    assert client.get(f"/v1/jobs/{finished}").json()["links"]["view"] == f"/v1/jobs/{finished}/view"
    queued = client.get(f"/v1/jobs/{view_jobs.queued_id}").json()
    assert queued["status"] == "queued" and queued["links"]["view"] is None
    for path in ("view", "heatmap.png", "heatmap.svg"):
        problem = assert_problem(client.get(f"/v1/jobs/{view_jobs.queued_id}/{path}"), 409, "job-not-ready")
        assert problem["job_status"] == "queued"
        assert_problem(client.get(f"/v1/jobs/{'0' * 32}/{path}"), 404, "unknown-job")


@pytest.fixture(scope="module")
def limited_api(
    redis_url: str, tiny_registry: Path, tmp_path_factory: pytest.TempPathFactory, view_jobs: ViewJobs
) -> Iterator[str]:
    """A second API process whose export limit is the decoder job's stored JSON size: that JSON fits, its
    page (several times larger) does not, and the granular job's larger JSON does not either."""
    limit = view_jobs.stored_sizes["decoder"]
    assert view_jobs.stored_sizes["granular"] > limit
    env = stack_env(
        redis_url, tiny_registry, tmp_path_factory.mktemp("views"), SEQATTR_MAX_EXPORT_BYTES=str(limit)
    )
    process, url = start_api(env)
    yield url
    stop(process, "API")


def test_views_over_the_export_limit_are_413(view_jobs: ViewJobs, limited_api: str) -> None:
    decoder, granular = view_jobs.results["decoder"]["id"], view_jobs.results["granular"]["id"]
    with httpx.Client(base_url=limited_api, timeout=30) as client:
        assert client.get(f"/v1/jobs/{decoder}/result").status_code == 200
        problem = assert_problem(client.get(f"/v1/jobs/{decoder}/view"), 413, "export-too-large")
        assert problem["format"] == "html" and problem["estimated_bytes"] > problem["max_bytes"]
        assert client.get(f"/v1/jobs/{decoder}/heatmap.svg").status_code == 200  # images have a capped size
        for path in ("view", "heatmap.png"):  # a stored result over the limit is not even read
            assert_problem(client.get(f"/v1/jobs/{granular}/{path}"), 413, "export-too-large")


# The renderers alone, on results no tiny tokenizer can produce.

HOSTILE = [
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(2)>',
    "' onmouseover='alert(3)",
    "</td></tr></table><b>",
    "&amp;<!--",
    "<svg onload=x>",
]


def _token(i: int, token: str) -> dict[str, Any]:
    return {"id": i, "token": token, "text": token}


def _hostile_result() -> dict[str, Any]:
    source = [_token(i, t) for i, t in enumerate(HOSTILE)]
    target = [*source, _token(50, "<b>bold</b>"), _token(51, "$x^2$ & <i>")]
    start, n = len(source), 2
    rows = [[0.5 if i < start + j else None for j in range(n)] for i in range(len(target))]
    return {
        "id": "<job>",
        "model": {"id": "<model>", "architecture": "<arch>", "is_encoder_decoder": False},
        "method": "<method>",
        "attributed_fn": "<fn>",
        "sequences": [
            {
                "source": source,
                "target": target,
                "attr_pos_start": start,
                "attr_pos_end": start + n,
                "source_attributions": None,
                "target_attributions": rows,
                "step_scores": {"<script>x</script>": [0.1, -0.2]},
                "sequence_scores": {},
                "contrast_source": None,
                "contrast_target": [_token(60, "<contrast>"), _token(51, "$x^2$ & <i>")],
                "contrast_positions": [0, 1],
            }
        ],
        "info": {"warnings": ["<script>alert(4)</script>"], "aggregation": {}},
    }


def test_the_page_escapes_every_string_of_the_result() -> None:
    result = _hostile_result()
    page = render_html(result)
    parsed = parse_view(page)
    assert (
        parsed.scripts == 1 and "img" not in parsed.tags and "b" not in parsed.tags and "i" not in parsed.tags
    )
    assert parsed.urls == []
    assert "<script>alert" not in page and "<img" not in page
    text = "".join(parsed.text)
    for hostile in [*HOSTILE, "<b>bold</b>", "<model>", "<script>alert(4)</script>"]:
        assert hostile[:20] in text  # shown as text (headers truncate long tokens)
    [seq] = parsed.sequences
    labels = [r.label for r in seq.rows]
    assert labels[: len(HOSTILE)] == HOSTILE and labels[-1] == "<script>x</script>"
    assert seq.columns[0]["data-contrast"] == "<contrast>" and "data-contrast" not in seq.columns[1]
    # Both signs in one step-score row: a diverging scale of its own.
    assert [_score(c) for c in seq.rows[-1].cells] == [0.1, -0.2]


def test_the_svg_escapes_tokens() -> None:
    result = _hostile_result()
    svg = render_image(sequence_heatmap(result["sequences"][0], 0), "svg", "<title>")
    root = ET.fromstring(svg)
    assert not list(root.iter(SVG + "script")) and len(list(root.iter(SVG + "svg"))) == 1
    assert {"<svg onload=x>", "$x^2$ & <i>", "<title>"} <= _svg_texts(svg)  # and '$' is not TeX


def test_the_api_starts_without_matplotlib() -> None:
    code = (
        "import sys, service.main; service.main.create_app(); "
        "assert 'matplotlib' not in sys.modules, 'matplotlib imported at start-up'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_reaggregated_result_renders(client: httpx.Client, view_jobs: ViewJobs) -> None:
    job_id = view_jobs.results["seq2seq"]["id"]
    response = client.post(f"/v1/jobs/{job_id}/aggregate", json={"steps": [{"aggregator": "subwords"}]})
    assert response.status_code == 200, response.text
    result = orjson.loads(response.content)
    assert_view_matches(render_html(result), result)
    assert render_image(sequence_heatmap(result["sequences"][0], 0), "png", "t")[:8] == PNG_SIGNATURE
