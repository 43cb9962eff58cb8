"""Resident memory (VmRSS) of the three service processes while the platform is idle.

Run: .venv/bin/python bench/service_memory.py
"""

from __future__ import annotations

import os
import sys

sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the repo, not bench/

import statistics
import time

from bench.private_platform import Running, run_alone

SAMPLES = 5
INTERVAL_S = 1.0
TARGET_MB = 300


def rss_mb(pid: int) -> float:
    """VmRSS from /proc/<pid>/status, in MB (kB / 1024)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def run(running: Running) -> list[str]:
    samples: dict[str, list[float]] = {name: [] for name in running.pids}
    for i in range(SAMPLES):
        if i:
            time.sleep(INTERVAL_S)
        for name, pid in running.pids.items():
            samples[name].append(rss_mb(pid))
    medians = {name: statistics.median(values) for name, values in samples.items()}
    total = sum(medians.values())
    lines = [f"memory, {name} RSS: median {mb:.1f} MB  (min {min(samples[name]):.1f}, max {max(samples[name]):.1f}; "
             f"{SAMPLES} samples)" for name, mb in medians.items()]
    lines.append(f"memory, total of the medians: {total:.1f} MB   target < {TARGET_MB} MB   "
                 f"{'PASS' if total < TARGET_MB else 'MISS'}")
    return lines


def main() -> None:
    run_alone(run)


if __name__ == "__main__":
    main()
