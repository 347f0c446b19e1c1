"""Named defaults and limits shared by the API and the workers (one place, one docstring each)."""

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

MAX_IG_STEPS = 1000
"""Upper bound on integrated-gradients interpolation steps."""
