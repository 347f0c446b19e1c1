"""Named defaults and limits, one place for the API, the workers and the runner, one docstring each.

Request limits bound what a client may ask for; the operational defaults below them can each be
overridden by a `SEQATTR_*` setting (see `schemas/settings.py` and each process's settings class).
"""

# -- requests ----------------------------------------------------------------------------------------------

DEFAULT_MODEL = "smollm2-135m-instruct"
"""Model id used when a request names none."""

DEFAULT_METHOD = "saliency"
"""Attribution method used when a request names none."""

DEFAULT_ATTRIBUTED_FN = "probability"
"""Step function whose gradient/perturbation is attributed by default (the reference library's default)."""

DEFAULT_MAX_NEW_TOKENS = 20
"""Tokens generated when `generation_args.max_new_tokens` is not given."""

MAX_NEW_TOKENS = 512
"""Upper bound on `generation_args.max_new_tokens`."""

MAX_INPUTS_PER_REQUEST = 32
"""Upper bound on the number of input texts in one attribution request."""

MAX_INPUT_CHARS = 20_000
"""Upper bound on the length of one input or forced target text, in characters."""

MAX_SEQUENCE_TOKENS = 2048
"""Upper bound on prompt + target tokens of one sequence, checked by the worker after tokenization."""

MAX_JOB_COST = 20_000_000
"""Most token-steps one job may cost (attributed steps x sequence length x method copies, summed over inputs):
past it the worker fails the job with a 422 before computing anything (about 100 s of CPU per million)."""

MAX_IG_STEPS = 1000
"""Upper bound on integrated-gradients interpolation steps."""

MAX_TOKEN_INDEX = 1_000_000
"""Upper bound on any token position or count in a request (far above any model's context): every integer
field is bounded, so no value reaches the job store that JSON tools cannot represent."""

MAX_TOKEN_ID = 2**31 - 1
"""Upper bound on a token id in a request."""


# -- jobs, workers and the runner ------------------------------------------------------------------------

DEFAULT_HOST = "127.0.0.1"
"""Interface the API listens on; local only unless told otherwise."""

DEFAULT_PORT = 8000
"""Port of the HTTP API (`PORT` or `SEQATTR_PORT`)."""

EMBEDDED_REDIS_PORT = 6380
"""Port of the embedded redis-server when `REDIS_URL` is unset (6380: clear of a system Redis on 6379)."""

DEFAULT_DATA_DIR = "data"
"""Folder (relative to the working directory) for the embedded Redis files and converted model weights."""

MODEL_CACHE_SUBDIR = "models"
"""Folder under the data dir holding converted model weights (a GGUF entry is converted once)."""

JOB_TIMEOUT_S = 600
"""Longest a job may run before the worker aborts it as failed."""

QUEUED_JOB_TTL_S = 24 * 3600
"""Longest a job may wait in its queue before it expires unrun."""

RESULT_TTL_S = 24 * 3600
"""How long a finished or failed job and its result are kept."""

TOMBSTONE_TTL_S = 7 * 24 * 3600
"""How long, after its retention, an expired job id still answers 410 instead of 404."""

LONG_POLL_MAX_S = 120.0
"""Upper bound on `GET /v1/jobs/{id}?wait=S`."""

LONG_POLL_INTERVAL_S = 0.2
"""How often a long poll re-reads the job while it waits for no news (a worker's announcement wakes it)."""

LONG_POLL_SETTLE_S = 0.005
"""How often a woken long poll re-reads the job until RQ has recorded its end (a few milliseconds)."""

SSE_KEEPALIVE_S = 15.0
"""Longest silence on a job's event stream before a keep-alive comment (proxies drop idle connections)."""

SSE_POLL_S = 1.0
"""How often an event stream re-reads its job without news (no one announces a start or a lost worker)."""

CALLBACK_ATTEMPTS = 4
"""Deliveries of one job's callback before it is given up (the first and its retries)."""

CALLBACK_BACKOFF_S = 0.5
"""Wait before a callback's first retry; it doubles before each next one."""

CALLBACK_TIMEOUT_S = 5.0
"""Longest one callback delivery may take (connect, send, answer)."""

CALLBACK_END_WAIT_S = 5.0
"""Longest the callback sender waits, after a worker announced a job's end, for RQ to record it."""

MAX_BODY_BYTES = 4 * 1024 * 1024
"""Largest request body accepted (413 above): 32 inputs of 20,000 characters fit with room to spare."""

LIST_DEFAULT_LIMIT = 20
"""Jobs per page of `GET /v1/jobs` when `limit` is not given."""

LIST_MAX_LIMIT = 100
"""Upper bound on `limit` in `GET /v1/jobs`."""

LIST_MAX_SCAN = 1000
"""Index entries one `GET /v1/jobs` page may inspect while filtering by status before it returns a cursor."""

IDEMPOTENCY_IN_FLIGHT_S = 2.0
"""How long after its claim an Idempotency-Key whose job is not in Redis yet counts as being enqueued by
a concurrent request (a replay waits for that job) rather than as freed by a deleted job."""

IDEMPOTENCY_POLL_S = 0.01
"""How often a replay looks for the job a concurrent request is enqueueing."""

MIN_API_KEY_LENGTH = 16
"""Shortest API key accepted in the configuration (shorter ones are guessable)."""

IDEMPOTENCY_KEY_MAX_LENGTH = 200
"""Longest accepted `Idempotency-Key` header value."""

RATE_LIMIT = "100/second"
"""Requests one API key (or, without keys, one client address) may make; `limits` notation, `;`-separated."""

MAX_QUEUED_JOBS = 1000
"""Jobs that may wait in one model's queue; past it, submits get 503 with Retry-After."""

QUEUE_FULL_RETRY_AFTER_S = 10
"""`Retry-After` sent when a model's queue is full."""

REDIS_CONNECT_TIMEOUT_S = 2.0
"""Longest the API waits to connect to Redis before answering 503."""

REDIS_COMMAND_TIMEOUT_S = 5.0
"""Longest the API waits for one Redis reply before answering 503."""

READYZ_RETRY_AFTER_S = 5
"""`Retry-After` sent with a 503 from `/readyz`."""

WORKER_HEARTBEAT_S = 5.0
"""How often a busy worker refreshes its heartbeat while a job runs."""

WORKER_HEARTBEAT_MISSES = 3
"""Heartbeats a busy worker may miss before its job counts as abandoned (then reported `failed`)."""

LOST_WORKER_RETRIES = 1
"""Times a job whose worker died (no heartbeat) is put back on its queue before it fails as worker-lost."""

WORKER_TTL_S = 60
"""Lifetime of an idle worker's registration between its heartbeats (RQ adds 60 s of grace)."""

WORKER_MAINTENANCE_S = 60
"""How often a worker runs RQ's registry cleanup (abandoned jobs, expired entries)."""

DURATION_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
"""Upper bounds of the job and engine time histograms of `GET /metrics`, in seconds."""

PROGRESS_MIN_INTERVAL_S = 0.5
"""Least time between two progress writes of one job (the first and the last are always written)."""

SUPERVISOR_BACKOFF_S = (1.0, 30.0)
"""First and largest delay before the runner restarts a worker that died (doubling in between)."""

SUPERVISOR_POLL_S = 0.5
"""How often the runner checks its children (and a stop request)."""

SUPERVISOR_STABLE_S = 60.0
"""A worker that ran this long before dying is restarted after the first backoff delay again."""

SHUTDOWN_GRACE_S = 10.0
"""Time a child process gets to stop on SIGTERM before the runner kills it."""

REDIS_START_TIMEOUT_S = 15.0
"""How long the runner waits for the embedded Redis to answer PING."""

CLI_HTTP_TIMEOUT_S = 30.0
"""Longest the `seqattr` command waits to connect to the API, or for the next bytes of an answer."""

MAX_METHOD_SAMPLES = 1000
"""Upper bound on sampled copies per step of randomised methods (gradient_shap, lime, reagent probes)."""

MAX_UNIT_INDEX = 4096
"""Upper bound on a layer or head index in method arguments (no model has more)."""

MAX_AGGREGATION_STEPS = 16
"""Most steps in one aggregation chain (request or `POST /v1/jobs/{id}/aggregate`)."""

MAX_SPANS = 4096
"""Most spans one `spans` or `slices` step may list per side."""

DEFAULT_MAX_GRANULAR_BYTES = 64 * 1024 * 1024
"""Most bytes of unreduced scores a worker keeps for one job (`aggregation.keep_granular`); past it the job
still finishes, with a warning, and re-aggregations that need them answer 409."""

MAX_EXPORT_BYTES = 256 * 1024 * 1024
"""Largest export one request may produce, in the chosen format (413 above, naming the smaller formats)."""

MAX_EXPORT_PRECISION = 10
"""Most decimals `?precision=` may keep."""

SUGGESTED_PRECISION = 3
"""Decimals suggested in a 413 when rounding would bring the export under the limit."""

RESULT_CHUNK_BYTES = 1024 * 1024
"""Bytes read from Redis per GETRANGE while a stored JSON result streams out."""

EXPORT_CHUNK_BYTES = 256 * 1024
"""Rendered CSV or inseq text is sent in pieces of about this size (gzip flushes once per piece)."""

GZIP_MIN_BYTES = 1024
"""Responses smaller than this are sent uncompressed even when the client accepts gzip."""

GZIP_LEVEL = 6
"""zlib level of `Accept-Encoding: gzip` answers (9 costs several times the CPU for a few % less)."""

MAX_BATCH_ITEMS = 10_000
"""Most items one batch (`POST /v1/batches`) may hold."""

BATCH_CHUNK_ITEMS = 8
"""Items per chunk job of a batch when the request names no `chunk_size`, for a method that runs one copy of
each input (saliency, attention...); methods that run `n_steps` or `n_samples` copies get fewer
(`schemas.batches.default_chunk_size`), so that chunks take about as long whatever the method."""
