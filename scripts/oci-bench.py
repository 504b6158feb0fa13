#!/usr/bin/env python3
"""OCI runtimes timed side by side, interleaved (one run of each runtime
per round), medians (time.perf_counter). Needs root.

  cycle   create + start + wait for the exit + delete of one bundle, each
          step timed, and the CPU time of all the processes of a cycle
          (the runtime's and the container's):
            scripts/oci-bench.py cycle --bundle DIR [--runs 30] [--state DIR] RUNTIME...
  podman  `podman run --rm IMAGE true` with each runtime, from a podman
          storage under DIR (as `virtlab compare`'s podman rows):
            scripts/oci-bench.py podman --storage DIR --image NAME [--runs 25] RUNTIME...

A RUNTIME is a path or a name on PATH: runc, crun, or a `virtlab-runc`
link to virtlab (the name makes virtlab the OCI runtime). The last one is
the reference of the ratios. The bundle's process should end by itself
(`args: ["true"]`); --state is where each runtime keeps its containers
(--root; a tmpfs, as /run, by default a fresh directory under /dev/shm).
"""
import argparse
import ctypes
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

DEVNULL = subprocess.DEVNULL


def call(argv, errors):
    """Runs argv (its standard streams away from us: a created container
    keeps the ones it was given); its time."""
    t = time.perf_counter()
    errors.seek(0)
    errors.truncate()
    r = subprocess.run(argv, stdin=DEVNULL, stdout=DEVNULL, stderr=errors)
    took = time.perf_counter() - t
    if r.returncode != 0:
        errors.seek(0)
        sys.exit(f"{' '.join(argv)}: exit status {r.returncode}: {errors.read().strip()}")
    return took


def cycle_once(runtime, args, state, index, errors):
    root = os.path.join(state, runtime.replace("/", "_"))
    cid = f"bench-{os.getpid()}-{index}"
    pid_file = os.path.join(state, f"{cid}.pid")
    base = [runtime, "--root", root]
    t0 = time.perf_counter()
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    create = call(base + ["create", "--bundle", args.bundle, "--pid-file", pid_file, cid], errors)
    with open(pid_file) as f:
        pid = int(f.read().strip())
    os.remove(pid_file)
    start = call(base + ["start", cid], errors)
    t = time.perf_counter()
    os.waitpid(pid, 0)  # ours: this process is a subreaper
    wait = time.perf_counter() - t
    delete = call(base + ["delete", cid], errors)
    total = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)
    return {"create": create, "start": start, "wait": wait, "delete": delete, "total": total, "cpu": cpu}


def podman_once(runtime, args, errors):
    s = args.storage
    argv = ["podman", "--root", f"{s}/root", "--runroot", f"{s}/runroot", "--tmpdir", f"{s}/tmp",
            "--storage-driver", "vfs", "--cgroup-manager", "cgroupfs", "--events-backend", "none",
            "run", "--rm", "--pull", "never", "--runtime", runtime, "--network", "none",
            "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024", args.image, "true"]
    return {"total": call(argv, errors)}


def table(results, keys, runs):
    print(f"{'runtime':<36}" + "".join(f"{k:>9}" for k in keys) + f"   (ms, medians of {runs})")
    for rt, samples in results.items():
        print(f"{rt:<36}" + "".join(f"{statistics.median(s[k] for s in samples) * 1000:>9.2f}" for k in keys))
    ref = list(results)[-1]
    for rt in list(results)[:-1]:
        ratios = []
        for k in [k for k in ("total", "cpu") if k in keys]:
            a = statistics.median(s[k] for s in results[rt])
            b = statistics.median(s[k] for s in results[ref])
            ratios.append(f"{a / b:.2f}x ({k})")
        print(f"{rt} / {ref}: " + ", ".join(ratios))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="mode", required=True)
    c = sub.add_parser("cycle")
    c.add_argument("--bundle", required=True)
    c.add_argument("--state")
    c.add_argument("--runs", type=int, default=30)
    c.add_argument("runtimes", nargs="+")
    m = sub.add_parser("podman")
    m.add_argument("--storage", required=True)
    m.add_argument("--image", required=True)
    m.add_argument("--runs", type=int, default=25)
    m.add_argument("runtimes", nargs="+")
    args = p.parse_args()
    if os.geteuid() != 0:
        sys.exit("oci-bench: needs root (the runtimes make namespaces and cgroups)")
    # PR_SET_CHILD_SUBREAPER: a created container's process, left by
    # `create`, comes to this process, which waits for it.
    ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)
    results = {rt: [] for rt in args.runtimes}
    with tempfile.TemporaryDirectory(prefix="oci-bench-", dir="/dev/shm") as tmp, \
            tempfile.TemporaryFile("w+") as errors:
        if args.mode == "cycle":
            args.bundle = os.path.abspath(args.bundle)
            state = args.state or tmp
            once = lambda rt, i: cycle_once(rt, args, state, i, errors)  # noqa: E731
            keys = ["create", "start", "wait", "delete", "total", "cpu"]
        else:
            once = lambda rt, i: podman_once(rt, args, errors)  # noqa: E731
            keys = ["total"]
        for rt in args.runtimes:  # one warm-up each, not kept
            once(rt, -1)
        for i in range(args.runs):
            for rt in args.runtimes:
                results[rt].append(once(rt, i))
    table(results, keys, args.runs)


if __name__ == "__main__":
    main()
