"""Cold rounds start settled: the last round's output gone and no dirty pages left to write back,
so no round pays for an earlier one's writeback (the disk here is shared and slow to drain)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path


def settled(*paths: Path) -> None:
    """Untimed set-up of a round: remove ``paths`` (files or folders), then ``sync``."""
    for path in paths:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    os.sync()
