"""A worker for testing the crash tests' harness: prints "ready", then ``LINES`` numbered lines
of 100 bytes at once (more than a pipe holds), then sleeps until killed.

    python -m tests.integration.chatter LINES
"""

from __future__ import annotations

import sys
import time

if __name__ == "__main__":
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    for n in range(int(sys.argv[1])):
        sys.stdout.write(f"{n:099d}\n")
    sys.stdout.flush()
    time.sleep(3600)
