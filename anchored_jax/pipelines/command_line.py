"""How the inference commands start and fail: absl flags parsed into one `error:` line.

`run(main)` is `absl.app.run` whose flag parsing reports a bad value (`--frames=abc`, an
unknown flag) as one `error: <flag>: ...` line and exit status 1, the same form as every other
refusal of the commands, instead of absl's usage text.
"""

from __future__ import annotations

import sys

from absl import app, flags


def parse_flags(argv: list[str]) -> list[str]:
    """absl's parsing, with its errors as one line."""
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        message = " ".join(str(e).split())
        sys.exit(f"error: {message}")


def run(main) -> None:
    """`app.run(main)` with one-line flag errors."""
    app.run(main, flags_parser=parse_flags)
