"""`python -m service.openapi [PATH]`: write the app's OpenAPI document (sorted keys, stable) to `PATH`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

OPENAPI_PATH = Path(__file__).resolve().parent.parent / "openapi" / "openapi.json"
"""Where the committed OpenAPI document lives."""


def openapi_document() -> dict[str, Any]:
    """The OpenAPI document of an app built with default settings."""
    from service.main import create_app
    from service.settings import ApiSettings

    # Defaults only: the document must not depend on this machine's environment.
    return create_app(ApiSettings.model_construct()).openapi()


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    path = Path(args[0]) if args else OPENAPI_PATH
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(openapi_document()))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
