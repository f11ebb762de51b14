"""Where the zoo keeps its files: the cache folder `$ZOO_HOME` (bottom layer: imports nothing)."""
from __future__ import annotations

import os
from pathlib import Path


def zoo_home() -> Path:
    """The zoo cache folder: `$ZOO_HOME`, else `~/.cache/zoo` (never the working directory)."""
    return Path(os.environ.get("ZOO_HOME", Path.home() / ".cache" / "zoo")).expanduser()
