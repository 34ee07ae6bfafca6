"""What the documentation checks add to CI: CPU and wall time of the lecture notebooks, the strict
site build and the docs-commands harness, each as its own pytest run (interleaved, repeated).

    python benchmarks/docs_ci_cost.py [--repeats 3]

CPU time is user + system of pytest and everything it started and waited for (the Jupyter
kernels, saved_model_cli), from getrusage(RUSAGE_CHILDREN). Prints median [min-max] per group,
the CPU model and the load average.
"""
import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GROUPS = {
    "lecture notebooks (5, nbclient)": ["tests/test_docs_site.py", "-k", "notebook"],
    "mkdocs build --strict": ["tests/test_docs_site.py", "-k", "mkdocs"],
    "docs-commands harness": ["tests/test_docs_commands.py"],
}


def once(args):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args], cwd=ROOT,
                       capture_output=True, text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode:
        sys.exit(r.stdout[-3000:])
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--repeats", type=int, default=3)
    n = p.parse_args().repeats
    results = {g: [] for g in GROUPS}
    for _ in range(n):
        for group, args in GROUPS.items():   # interleaved
            results[group].append(once(args))
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    print(f"CPU: {cpu}, {os.cpu_count()} cores; load average {os.getloadavg()[0]:.1f}; {n} runs each")
    print("| group | CPU s, median [min-max] | wall s, median [min-max] |\n|---|---|---|")
    total = 0.0
    for group, runs in results.items():
        walls, cpus = [w for w, _ in runs], [c for _, c in runs]
        total += statistics.median(cpus)
        print(f"| {group} | {statistics.median(cpus):.0f} [{min(cpus):.0f}-{max(cpus):.0f}] "
              f"| {statistics.median(walls):.0f} [{min(walls):.0f}-{max(walls):.0f}] |")
    print(f"| total (medians) | {total:.0f} | |")


if __name__ == "__main__":
    main()
