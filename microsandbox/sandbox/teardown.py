"""``python -m microsandbox.sandbox.teardown NAME``: what a namespace sandbox's supervisor runs
once its creator is gone: stop the sandbox and remove it, leaving no mount, process or cgroup."""
from __future__ import annotations

import sys

from .api import remove_sandbox

if __name__ == "__main__":
    remove_sandbox(sys.argv[1], supervisor=False)
