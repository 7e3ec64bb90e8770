"""`walkstream setup`: install the non-Python parts of the runtime, and skip what is current.

- JVM jars (Kafka broker + slf4j binding, Flink Kafka connector) resolved by Maven from the
  pinned ``pom.xml`` next to this module into ``runtime.jars_dir``, and the job's Java
  function (``java/`` next to it) compiled by the same build.
- Redis 8 (vector sets) built from Debian's pristine source tarball (Debian's own package on
  this OS is 7.0, and no well-kept PyPI wheel ships a Redis 8 server), checked by SHA-256, with
  TLS (rediss://) support.
- Debian packages these need (Maven, a JDK, a C toolchain, OpenSSL headers) when they are
  missing.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tarfile
import tempfile
import urllib.request
from importlib import resources
from pathlib import Path

from streaming.config import Settings
from streaming.errors import SetupError
from streaming.report import Report

__all__ = ["REDIS_VERSION", "install_runtime"]


REDIS_VERSION = "8.0.2"
_REDIS_SOURCE = (
    f"https://deb.debian.org/debian/pool/main/r/redis/redis_{REDIS_VERSION}.orig.tar.gz",
    "caf3c0069f06fc84c5153bd2a348b204c578de80490c73857bee01d9b5d7401f",
)
# command -> Debian package that provides it
_TOOLS = {
    "mvn": "maven",
    "java": "openjdk-17-jdk-headless",
    "javac": "openjdk-17-jdk-headless",
    "make": "make",
    "cc": "gcc",
}
# C header -> Debian package that provides it
_HEADERS = {"openssl/ssl.h": "libssl-dev"}
# How the managed redis-server is built; a binary built otherwise (or before TLS) is rebuilt.
_REDIS_BUILD = ("MALLOC=libc", "BUILD_TLS=yes")


def _ensure_tools(commands: list[str], report: Report, headers: tuple[str, ...] = ()) -> None:
    missing = [cmd for cmd in commands if shutil.which(cmd) is None]
    missing += [h for h in headers if not (Path("/usr/include") / h).is_file()]
    if not missing:
        return
    packages = sorted({_TOOLS.get(name) or _HEADERS[name] for name in missing})
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise SetupError(
            f"missing {', '.join(missing)}: install the packages {' '.join(packages)} "
            "(as root: apt-get install " + " ".join(packages) + "), then run setup again"
        )
    report(f"setup: installing Debian packages {' '.join(packages)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-q"], check=True, env=env, stdout=subprocess.DEVNULL)
    subprocess.run(
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages],
        check=True, env=env, stdout=subprocess.DEVNULL,
    )  # fmt: skip


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _build_inputs() -> dict[str, bytes]:
    """The pom and the Java sources, by their path relative to this package."""
    package = resources.files("streaming.runtime")
    inputs = {"pom.xml": (package / "pom.xml").read_bytes()}
    pending = [("java", package / "java")]
    while pending:
        path, node = pending.pop()
        for child in node.iterdir():
            if child.is_dir():
                pending.append((f"{path}/{child.name}", child))
            elif child.name.endswith(".java"):
                inputs[f"{path}/{child.name}"] = child.read_bytes()
    return inputs


def install_jars(settings: Settings, report: Report) -> None:
    jars = settings.runtime.jars_dir
    inputs = _build_inputs()
    build_hash = _sha256(
        b"".join(name.encode() + b"\0" + data for name, data in sorted(inputs.items()))
    )
    stamp = jars / ".build.sha256"
    if stamp.is_file() and stamp.read_text().strip() == build_hash:
        report(f"setup: jars are current in {jars}")
        return
    _ensure_tools(["mvn", "java", "javac"], report)
    report(
        f"setup: resolving Kafka and the Flink Kafka connector, and compiling the job's Java "
        f"functions, with Maven into {jars}"
    )
    for stale in ("kafka", "flink"):
        shutil.rmtree(jars / stale, ignore_errors=True)
    with tempfile.TemporaryDirectory() as build:
        # Maven writes target/ next to the pom: build from a copy outside the source tree.
        for name, data in inputs.items():
            (Path(build) / name).parent.mkdir(parents=True, exist_ok=True)
            (Path(build) / name).write_bytes(data)
        result = subprocess.run(
            ["mvn", "-B", "-q", f"-Djars.dir={jars}", "package"],
            cwd=build, capture_output=True, text=True,
        )  # fmt: skip
    if result.returncode != 0:
        raise SetupError(
            "Maven could not build the runtime jars (is Maven Central reachable?):\n"
            + (result.stdout + result.stderr)[-3000:]
        )
    stamp.write_text(build_hash + "\n")


def _redis_version(binary: Path) -> str | None:
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    for word in out.stdout.split():
        if word.startswith("v="):
            return word[2:]
    return None


def install_redis(settings: Settings, report: Report) -> None:
    binary = settings.runtime.redis_server
    managed = settings.runtime.home / "redis" / "bin" / "redis-server"
    version = _redis_version(binary)
    if binary != managed:
        if version is None:
            raise SetupError(f"runtime.redis_server = {binary} does not run: fix the path")
        report(f"setup: using your redis-server {version} at {binary}")
        return
    stamp = managed.parent / ".build"
    flavour = f"{REDIS_VERSION} {' '.join(_REDIS_BUILD)}"
    if version == REDIS_VERSION and stamp.is_file() and stamp.read_text().strip() == flavour:
        report(f"setup: redis-server {version} is current at {binary}")
        return
    _ensure_tools(["make", "cc"], report, headers=tuple(_HEADERS))
    url, expected = _REDIS_SOURCE
    report(f"setup: downloading Redis {REDIS_VERSION} source from {url}")
    try:
        with urllib.request.urlopen(url, timeout=120) as response:
            tarball = response.read()
    except OSError as exc:
        raise SetupError(
            f"could not download {url} ({exc}). Alternative: install Debian's redis-server "
            "(7.0, without vector sets) and set runtime.redis_server=/usr/bin/redis-server"
        ) from exc
    if _sha256(tarball) != expected:
        raise SetupError(f"{url} does not have the pinned SHA-256 {expected}; not building it")
    with tempfile.TemporaryDirectory() as build:
        archive = Path(build) / "redis.tar.gz"
        archive.write_bytes(tarball)
        with tarfile.open(archive) as tar:
            tar.extractall(build, filter="data")
        source = Path(build) / f"redis-{REDIS_VERSION}"
        jobs = str(os.cpu_count() or 1)
        report(f"setup: building redis-server {REDIS_VERSION} (about a minute on 2 cores)")
        # libc malloc: a much shorter build than the bundled jemalloc, fine for a local stack.
        # TLS built in (linked against the system's OpenSSL) for rediss:// servers.
        result = subprocess.run(
            ["make", "-j", jobs, *_REDIS_BUILD],
            cwd=source, capture_output=True, text=True,
        )  # fmt: skip
        if result.returncode != 0:
            raise SetupError("building Redis failed:\n" + (result.stdout + result.stderr)[-3000:])
        managed.parent.mkdir(parents=True, exist_ok=True)
        for program in ("redis-server", "redis-cli"):
            # Renamed into place: a running redis-server keeps its (old) file, no ETXTBSY.
            staged = managed.parent / f".{program}.new"
            shutil.copy2(source / "src" / program, staged)
            staged.replace(managed.parent / program)
    stamp.write_text(flavour + "\n")
    report(f"setup: redis-server {_redis_version(binary)} installed at {binary}")


def install_runtime(settings: Settings, report: Report = print) -> None:
    install_jars(settings, report)
    install_redis(settings, report)
