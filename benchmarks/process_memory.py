"""Peak resident memory of this process since it was started (exec'd)."""
from __future__ import annotations

import resource


def peak_rss_mb() -> float:
    """VmHWM from /proc: it belongs to the process image, so a child started by subprocess reports
    its own peak. getrusage's ru_maxrss does not: Linux carries it over fork + exec, so every child
    would report at least the parent's peak (here: a parent that imported torch to export models)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # macOS etc.: best available
