"""Write the API's OpenAPI document to docs/openapi.json (``python -m calibr_pipeline.api.openapi_doc``).

A test compares the committed file with the app's document, so the docs cannot drift.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


def render() -> str:
    from calibr_pipeline.api.app import create_app

    spec = create_app("sqlite://", console=False).openapi()
    return json.dumps(spec, indent=2, sort_keys=True) + "\n"


def main() -> int:
    DOC.write_text(render())
    print(f"wrote {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
