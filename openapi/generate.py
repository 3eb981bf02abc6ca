"""Write openapi/openapi.json: the OpenAPI document of the gateway's app, as the app
itself builds it (`gateway.app.create_app().openapi()`), with sorted keys, indented,
and ending in a newline, so that a change to the routes shows as a readable diff.

    python openapi/generate.py            # rewrite openapi/openapi.json
    python openapi/generate.py --check    # exit 1 if the file is not up to date

tests/test_openapi.py checks that the committed file is what this script writes now.
Building the app starts nothing: the AMQP side only starts with the app's lifespan.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUTPUT = HERE / "openapi.json"


def document() -> str:
    """The app's OpenAPI document as the text openapi.json must hold."""
    if str(HERE.parent) not in sys.path:
        sys.path.insert(0, str(HERE.parent))
    from gateway.app import create_app
    from gateway.settings import Settings

    # Default settings, whatever GATEWAY_* variables say: the document must not vary.
    settings = Settings.model_construct()
    return json.dumps(create_app(settings).openapi(), indent=2, sort_keys=True) + "\n"


def main(arguments: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only check, write nothing")
    parser.add_argument("--output", type=Path, default=OUTPUT, help=f"default {OUTPUT}")
    options = parser.parse_args(arguments)
    text = document()
    if options.check:
        current = options.output.read_text(encoding="utf-8") if options.output.exists() else ""
        if current != text:
            print(f"{options.output} is out of date: run python openapi/generate.py")
            return 1
        print(f"{options.output} is up to date")
        return 0
    options.output.write_text(text, encoding="utf-8")
    print(f"wrote {options.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
