"""`projctl shell-init`: the shell snippets, and the layout of the prompt files they read.

The daemon writes the files (projctld/prompt/files.py) and the snippets read them, so the
layout lives here, in the one package both import.
"""

from __future__ import annotations

import os
import shlex

SHELLS = ("bash", "zsh", "fish")
# Under the prompt directory: R/.repo and R/.branch/NAME per checkout root R, and .alive.
ALIVE = ".alive"
REPO = ".repo"
BRANCHES = ".branch"
# The daemon rewrites .alive this often; shells call it gone after three missed beats.
HEARTBEAT = 20
GONE_AFTER = 3 * HEARTBEAT


def snippet(shell: str, prompt_dir: str) -> str:
    """The snippet for `shell`, reading the prompt files under `prompt_dir`."""
    with open(os.path.join(os.path.dirname(__file__), "shell", f"projctl.{shell}"),
              encoding="utf-8") as handle:
        text = handle.read()
    quoted = _fish_quote(prompt_dir) if shell == "fish" else shlex.quote(prompt_dir)
    return text.replace("@PROMPT_DIR@", quoted).replace("@GONE_AFTER@", str(GONE_AFTER))


def _fish_quote(text: str) -> str:
    # In fish single quotes, only \ and ' are special.
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
