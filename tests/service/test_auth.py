"""API keys: every route but the health checks needs one when keys are configured; a job is visible only to
the key that created it (another key gets 404, as for an id that never existed)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cli.processes import stop
from tests.service.helpers import assert_problem, queued_request
from tests.service.stack import stack_env, start_api

ALICE, BOB = "alice-key-0123456789abcdef", "bob-key-0123456789abcdef00"


@pytest.fixture(scope="module")
def keyed_api(redis_url: str, tiny_registry: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("keys")
    keys_file = folder / "keys.txt"
    keys_file.write_text(f"# the team's keys\nbob:{BOB}\n")
    env = stack_env(
        redis_url,
        tiny_registry,
        folder,
        SEQATTR_API_KEYS=f"alice:{ALICE}",
        SEQATTR_API_KEYS_FILE=str(keys_file),
    )
    process, url = start_api(env)
    yield url
    stop(process, "API")


def _client(url: str, key: str | None = None, header: str = "bearer") -> httpx.Client:
    headers = {}
    if key is not None:
        headers = {"Authorization": f"Bearer {key}"} if header == "bearer" else {"X-API-Key": key}
    return httpx.Client(base_url=url, headers=headers, timeout=30)


@pytest.mark.parametrize("path", ["/v1/jobs", "/v1/methods", "/v1/models"])
def test_missing_or_wrong_keys_are_401_problems(keyed_api: str, path: str) -> None:
    for key in (None, "not-a-key", ALICE + "x"):
        with _client(keyed_api, key) as client:
            response = client.get(path)
        assert_problem(response, 401, "unauthorized")
        assert response.headers["www-authenticate"].startswith("Bearer")
    with _client(keyed_api) as client:
        assert_problem(client.post("/v1/attributions", json=queued_request()), 401, "unauthorized")


def test_health_checks_need_no_key(keyed_api: str) -> None:
    with _client(keyed_api) as client:
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").status_code in (200, 503)


def test_a_job_is_visible_to_its_key_only(keyed_api: str) -> None:
    with _client(keyed_api, ALICE) as alice, _client(keyed_api, BOB, header="x-api-key") as bob:
        job = alice.post("/v1/attributions", json=queued_request())
        assert job.status_code == 202, job.text
        job_id = job.json()["id"]
        assert alice.get(f"/v1/jobs/{job_id}").status_code == 200
        assert alice.get(f"/v1/jobs/{job_id}/result").status_code == 409
        for response in (
            bob.get(f"/v1/jobs/{job_id}"),
            bob.get(f"/v1/jobs/{job_id}/result"),
            bob.delete(f"/v1/jobs/{job_id}"),
        ):
            assert_problem(response, 404, "unknown-job")
        assert job_id in [j["id"] for j in alice.get("/v1/jobs").json()["jobs"]]
        assert job_id not in [j["id"] for j in bob.get("/v1/jobs").json()["jobs"]]
        # The same Idempotency-Key belongs to each key separately.
        first = alice.post("/v1/attributions", json=queued_request(), headers={"Idempotency-Key": "k1"})
        other = bob.post("/v1/attributions", json=queued_request(seed=3), headers={"Idempotency-Key": "k1"})
        assert first.status_code == other.status_code == 202
        assert first.json()["id"] != other.json()["id"]
        assert alice.delete(f"/v1/jobs/{job_id}").status_code == 202  # the owner can cancel it
        metrics = alice.get("/metrics").text
        assert 'key="alice"' in metrics and 'key="bob"' in metrics
        assert ALICE not in metrics and BOB not in metrics


def test_bad_key_configuration_is_refused() -> None:
    from service.settings import ApiSettings

    with pytest.raises(ValueError, match="at least 16 characters"):
        ApiSettings(api_keys="alice:short")
    with pytest.raises(ValueError, match="given twice"):
        ApiSettings(api_keys=f"alice:{ALICE},alice:{BOB}")
    with pytest.raises(ValueError, match="no key is configured"):
        ApiSettings(require_api_keys=True)
    assert ApiSettings(api_keys=f"alice:{ALICE}, bob:{BOB}").key_table() == {"alice": ALICE, "bob": BOB}
