# SPDX-License-Identifier: MIT
"""benchenv - where the benchmark scripts find their programs and libraries,
and how they run them.

The preset trees are build/fast, build/standard and build/observe under the
source root; --build VARIANT=DIR points a variant elsewhere and --base-dir
names the tree whose libc and mimalloc binaries (and plain binary) are used,
by default the first preset tree that exists.

Allocator names used by every script:
  hakmem-fast, hakmem-standard, hakmem-observe
                      <variant tree>/bench/<program>_hakmem
  libc, mimalloc      <base tree>/bench/<program>_libc, _mimalloc
  preload-hakmem      <base tree>/bench/<program>_libc with LD_PRELOAD of the
                      fast tree's libhakmem.so (the base tree's if no fast)
  preload-hakmem-standard
                      the same with the standard tree's libhakmem.so (the
                      release build, as users preload it)
  preload-mimalloc, preload-tcmalloc, preload-jemalloc
                      the same plain binary with LD_PRELOAD of the system's
                      libmimalloc.so.2 / libtcmalloc_minimal.so.4 /
                      libjemalloc.so.2
  preload-glibc       the same plain binary, nothing preloaded
"""

import datetime
import os
import platform
import shutil
import subprocess
import sys

SRC = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VARIANTS = ("fast", "standard", "observe")
ALLOCATORS = ("hakmem-fast", "hakmem-standard", "hakmem-observe", "libc",
              "mimalloc", "preload-hakmem", "preload-hakmem-standard",
              "preload-mimalloc",
              "preload-tcmalloc", "preload-jemalloc", "preload-glibc")
# Shared libraries of the peers, and the Debian package that provides each.
PEER_LIBS = {
    "mimalloc": ("libmimalloc.so.2", "libmimalloc2.0 (libmimalloc-dev)"),
    "tcmalloc": ("libtcmalloc_minimal.so.4", "libtcmalloc-minimal4"),
    "jemalloc": ("libjemalloc.so.2", "libjemalloc2"),
}
LIB_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib",
            "/usr/local/lib", "/lib/x86_64-linux-gnu")


def add_build_args(parser):
    parser.add_argument(
        "--build", action="append", default=[], metavar="VARIANT=DIR",
        help="build tree of a hakmem variant (default build/<variant>)")
    parser.add_argument(
        "--base-dir", metavar="DIR",
        help="tree whose libc/mimalloc binaries are used (default: the first "
             "of build/fast, build/standard, build/observe that exists)")


class Builds:
    """The build trees named on the command line, or the preset trees."""

    def __init__(self, args):
        self.dirs = {v: os.path.join(SRC, "build", v) for v in VARIANTS}
        for spec in args.build:
            variant, eq, path = spec.partition("=")
            if not eq or variant not in VARIANTS:
                sys.exit("--build wants VARIANT=DIR with VARIANT one of %s"
                         % ", ".join(VARIANTS))
            self.dirs[variant] = os.path.abspath(path)
        if args.base_dir:
            self.base = os.path.abspath(args.base_dir)
        else:
            self.base = next((self.dirs[v] for v in VARIANTS
                              if os.path.isdir(self.dirs[v])),
                             self.dirs["fast"])

    def program(self, tree, program, alloc):
        return os.path.join(tree, "bench", "%s_%s" % (program, alloc))

    def libhakmem(self, variant="fast"):
        trees = (self.dirs[variant], self.base) if variant == "fast" else \
            (self.dirs[variant],)
        for tree in trees:
            path = os.path.join(tree, "libhakmem.so")
            if os.path.exists(path):
                return path
        return None

    def resolve(self, allocator, program):
        """(argv prefix, extra environment) to run program with allocator,
        or (None, reason) when it cannot be run here."""
        if allocator.startswith("hakmem-"):
            variant = allocator[len("hakmem-"):]
            if variant not in VARIANTS:
                return None, "unknown hakmem variant %s" % variant
            path = self.program(self.dirs[variant], program, "hakmem")
            if not os.access(path, os.X_OK):
                return None, ("%s not built (cmake --preset %s && cmake "
                              "--build --preset %s)" % (path, variant, variant))
            return [path], {}
        if allocator in ("libc", "mimalloc"):
            path = self.program(self.base, program, allocator)
            if not os.access(path, os.X_OK):
                why = " (apt-get install libmimalloc-dev, then reconfigure)" \
                    if allocator == "mimalloc" else ""
                return None, "%s not built%s" % (path, why)
            return [path], {}
        if allocator.startswith("preload-"):
            plain = self.program(self.base, program, "libc")
            if not os.access(plain, os.X_OK):
                return None, "%s not built" % plain
            lib = allocator[len("preload-"):]
            if lib == "glibc":
                return [plain], {}
            if lib in ("hakmem", "hakmem-standard"):
                variant = "standard" if lib == "hakmem-standard" else "fast"
                so = self.libhakmem(variant)
                if not so:
                    return None, "the %s tree's libhakmem.so not built" % variant
                return [plain], {"LD_PRELOAD": so}
            if lib in PEER_LIBS:
                so = find_library(PEER_LIBS[lib][0])
                if not so:
                    return None, "%s not found (apt-get install %s)" % PEER_LIBS[lib]
                return [plain], {"LD_PRELOAD": so}
        return None, "unknown allocator %s (known: %s)" % (
            allocator, ", ".join(ALLOCATORS))


def find_library(name):
    for d in LIB_DIRS:
        path = os.path.join(d, name)
        if os.path.exists(path):
            return path
    return None


def run_env(extra):
    """The environment of a benchmark run: ours, without a preload or hakmem
    settings inherited by accident, plus extra."""
    env = {k: v for k, v in os.environ.items()
           if k != "LD_PRELOAD" and not k.startswith("HAKMEM_")}
    env.update(extra)
    return env


def pin_prefix(cpus_wanted, cpu_arg):
    """taskset prefix pinning a run to cpus_wanted CPUs (the highest numbered
    ones we may use, away from CPU 0 and its interrupts), or [] when that is
    not possible or --cpu none."""
    if cpu_arg == "none" or not shutil.which("taskset"):
        return []
    if cpu_arg:
        return ["taskset", "-c", cpu_arg]
    try:
        allowed = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return []
    if len(allowed) < cpus_wanted:
        return []
    return ["taskset", "-c", ",".join(map(str, allowed[-cpus_wanted:]))]


def run(argv, env_extra, timeout=1800):
    """Runs a benchmark; returns (stdout, stderr); exits on failure."""
    try:
        p = subprocess.run(argv, env=run_env(env_extra), capture_output=True,
                           text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        sys.exit("timed out after %d s: %s" % (timeout, " ".join(argv)))
    if p.returncode != 0:
        sys.stderr.write(p.stdout + p.stderr)
        sys.exit("failed (status %d): %s%s" % (
            p.returncode, " ".join("%s=%s" % kv for kv in env_extra.items()) + " "
            if env_extra else "", " ".join(argv)))
    return p.stdout, p.stderr


def machine_info(argv):
    def sh(cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True,
                                  cwd=SRC).stdout.strip()
        except OSError:
            return ""
    model = ""
    for line in sh(["lscpu"]).splitlines():
        if line.startswith("Model name"):
            model = line.split(":", 1)[1].strip()
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "host": platform.node(),
        "nproc": os.cpu_count(),
        "cpu": model,
        "kernel": platform.release(),
        # -dirty: the allocator sources differ from the commit.
        "commit": sh(["git", "rev-parse", "--short", "HEAD"]) + (
            "-dirty" if sh(["git", "status", "--porcelain", "--",
                            "libhak-core", "libhak-os", "libhak-stats",
                            "libhak-tiny", "CMakeLists.txt"]) else ""),
        "command": " ".join(argv),
    }


def out_dir(path, suffix=""):
    """The output directory (created): path, or bench/results/<timestamp>."""
    if not path:
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        path = os.path.join(SRC, "bench", "results", stamp + suffix)
    os.makedirs(path, exist_ok=True)
    # Absolute: gnuplot runs in the directory, and the files it names must
    # still be found there when --out was given relative to the caller.
    return os.path.abspath(path)


def gnuplot(script_path):
    """Runs a gnuplot script; returns False (with a message) when gnuplot is
    missing or fails, since a chart is never worth failing a run."""
    if not shutil.which("gnuplot"):
        print("no chart: gnuplot not found (apt-get install gnuplot-nox)")
        return False
    p = subprocess.run(["gnuplot", script_path], capture_output=True, text=True,
                       cwd=os.path.dirname(script_path))
    if p.returncode != 0:
        print("no chart: gnuplot failed:\n" + p.stderr)
        return False
    return True
