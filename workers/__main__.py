"""`python -m workers`: run one worker on the queues of the models it serves (see `workers/settings.py`)."""

from __future__ import annotations

import logging
import os
import socket
import sys

from pydantic import ValidationError
from redis import Redis

from schemas.errors import SeqattrError
from schemas.logs import configure_logging
from schemas.models import RegistryError, load_registry
from schemas.redis_keys import SERIALIZER, queue_name
from workers.settings import WorkerSettings, get_worker_settings

logger = logging.getLogger("workers")


def served_models(settings: WorkerSettings, registry_ids: list[str]) -> list[str]:
    """The model ids this worker listens for; unknown ids are a configuration error."""
    chosen = settings.worker_models or sorted(registry_ids)
    unknown = [model_id for model_id in chosen if model_id not in registry_ids]
    if unknown:
        raise ValueError(
            f"SEQATTR_WORKER_MODELS names unknown model(s) {', '.join(unknown)}; "
            f"available: {', '.join(sorted(registry_ids))}"
        )
    return chosen


def main() -> int:
    try:
        settings = get_worker_settings()
        registry = load_registry(settings.models)
        model_ids = served_models(settings, list(registry))
    except (ValidationError, RegistryError, ValueError) as exc:
        print(f"seqattr worker: invalid configuration: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)

    # torch is imported only now: configuration errors above are reported without the import's delay.
    import torch

    from workers.metrics import record_model_load
    from workers.model_cache import ModelCache
    from workers.worker import RQInterfaceChanged, SeqattrWorker, check_rq_interface

    try:
        check_rq_interface()
    except RQInterfaceChanged as exc:
        logger.error("%s", exc)
        return 2

    if settings.torch_threads:
        torch.set_num_threads(settings.torch_threads)
    connection = Redis.from_url(settings.effective_redis_url)
    cache = ModelCache(
        registry,
        settings.model_cache_dir,
        settings.device,
        on_load=lambda model_id: record_model_load(connection, model_id),
    )
    if settings.preload:
        for model_id in model_ids:
            try:
                cache.get(model_id)
                logger.info("preloaded %s", model_id)
            except SeqattrError as exc:  # the worker still serves the others; this model's jobs will fail
                logger.error("could not preload %s: %s", model_id, exc.detail)

    worker = SeqattrWorker(
        [queue_name(model_id) for model_id in model_ids],
        connection=connection,
        serializer=SERIALIZER,
        name=settings.worker_name or f"seqattr-{socket.gethostname()}-{os.getpid()}",
        model_cache=cache,
        heartbeat_s=settings.heartbeat_s,
        progress_interval_s=settings.progress_interval_s,
        max_job_cost=settings.max_job_cost,
        max_granular_bytes=settings.max_granular_bytes,
        worker_ttl=settings.worker_ttl_s,
        maintenance_interval=settings.maintenance_s,
        log_job_description=True,
    )
    logger.info("serving %s on %s", ", ".join(model_ids), settings.redis_url_for_logs)
    worker.work(logging_level=settings.log_level)
    return 0


if __name__ == "__main__":
    sys.exit(main())
