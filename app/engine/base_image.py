"""A base image without a registry: a Debian root file system, imported into Docker.

``debootstrap --variant=minbase`` with python3 and its venv module fills a temporary
folder from a Debian mirror (by default the one apt on this machine uses); the package
caches, documentation and translations are removed; the tree is packed with tar and
imported through the API (``docker import``). The image carries a hash of what it was made
from, so making it again with the same suite, mirror and packages is skipped.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from docker.errors import APIError, DockerException

from app.engine.docker_api import SLOW_CALL_TIMEOUT_S, connect
from app.engine.images import (
    INPUTS_LABEL,
    ROLE_LABEL,
    ImageBuildError,
    ImageResult,
    Progress,
    find_image,
    result,
    sha256_of_files,
    split_tag,
    up_to_date,
)

DEFAULT_SUITE = "bookworm"
DEFAULT_BASE_TAG = "postroom/base:bookworm"
FALLBACK_MIRROR = "http://deb.debian.org/debian"
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates")
BASE_IMAGE_ROLE = "base-image"
# Bump when the trimming or the import settings change, so older bases are made again.
BASE_FORMAT = "2"
APT_SOURCES = Path("/etc/apt")
# Removed from the root file system: caches and documentation nothing in the image reads.
TRIMMED = (
    "var/cache/apt",
    "var/lib/apt/lists",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
    "debootstrap",
)


def default_base_tag(suite: str) -> str:
    return f"postroom/base:{suite}"


# ---------------------------------------------------------------- the mirror


def apt_mirror(suite: str, apt_dir: Path = APT_SOURCES) -> str:
    """The first Debian mirror apt here uses for ``suite``, else deb.debian.org."""
    files = [apt_dir / "sources.list"]
    parts = apt_dir / "sources.list.d"
    if parts.is_dir():
        files += sorted(parts.glob("*.list")) + sorted(parts.glob("*.sources"))
    for path in files:
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        entries = deb822_entries(text) if path.suffix == ".sources" else one_line_entries(text)
        for uris, suites in entries:
            if suite in suites and uris:
                return uris[0].rstrip("/")
    return FALLBACK_MIRROR


def one_line_entries(text: str) -> Iterable[tuple[list[str], list[str]]]:
    """``deb [options] URI SUITE COMPONENTS...`` lines as ([URI], [SUITE])."""
    for line in text.splitlines():
        words = re.sub(r"\[[^]]*\]", " ", line.split("#", 1)[0]).split()
        if len(words) >= 3 and words[0] == "deb":
            yield [words[1]], [words[2]]


def deb822_entries(text: str) -> Iterable[tuple[list[str], list[str]]]:
    """deb822 stanzas (``Types: deb``, ``URIs:``, ``Suites:``) as (URIs, suites)."""
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line or line[:1].isspace():
                continue
            key, _, value = line.partition(":")
            fields[key.strip().lower()] = value.strip()
        if "deb" in fields.get("types", "").split() and fields.get("enabled", "yes") != "no":
            yield fields.get("uris", "").split(), fields.get("suites", "").split()


# ---------------------------------------------------------------- making the image


def make_base_image(
    *,
    tag: str | None = None,
    suite: str = DEFAULT_SUITE,
    mirror: str | None = None,
    force: bool = False,
    progress: Progress,
) -> ImageResult:
    """Import a minimal Debian with python3 as ``tag``, unless one from the same inputs exists."""
    started = time.monotonic()
    tag = tag or default_base_tag(suite)
    mirror = (mirror or apt_mirror(suite)).rstrip("/")
    client = connect(timeout=SLOW_CALL_TIMEOUT_S)
    inputs = sha256_of_files([], (BASE_FORMAT, suite, mirror, *BASE_PACKAGES))
    existing = None if force else up_to_date(client, [tag], inputs)
    if existing is not None:
        progress(f"{tag} is up to date ({suite} from {mirror}); --force makes it again")
        return result(existing, [tag], inputs, built=False, started=started)
    check_can_debootstrap()
    work = Path(tempfile.mkdtemp(prefix="postroom-base-"))
    try:
        rootfs = work / "rootfs"
        debootstrap(suite, mirror, rootfs, progress)
        trim(rootfs)
        archive = work / "rootfs.tar"
        progress("Packing the root file system")
        pack(rootfs, archive)
        progress(f"Importing it into Docker as {tag} ({archive.stat().st_size // 2**20} MB)")
        image_id = import_archive(client, archive, tag, inputs)
    finally:
        remove_work_folder(work, progress)
    image = find_image(client, image_id)
    if image is None:
        raise ImageBuildError(f"the Docker engine imported {tag} but does not list it.")
    return result(image, [tag], inputs, built=True, started=started)


def check_can_debootstrap() -> None:
    if os.geteuid() != 0:
        raise ImageBuildError(
            "making a base image runs debootstrap, which needs root; run it as root "
            "(sudo postroom sendengine base)."
        )
    if shutil.which("debootstrap") is None:
        raise ImageBuildError(
            "debootstrap is not installed; install it (sudo apt-get install debootstrap), "
            "or build on a registry image with `postroom sendengine build --base IMAGE`."
        )


def debootstrap(suite: str, mirror: str, rootfs: Path, progress: Progress) -> None:
    """Run debootstrap, showing one line each time it moves on to another phase."""
    command = [
        "debootstrap",
        "--variant=minbase",
        f"--include={','.join(BASE_PACKAGES)}",
        suite,
        str(rootfs),
        mirror,
    ]
    progress(f"debootstrap {suite} from {mirror} (a minute or two)")
    phases: set[str] = set()
    tail: list[str] = []
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as process:
        assert process.stdout is not None
        for line in process.stdout:
            line = line.rstrip()
            tail = [*tail[-20:], line]
            words = line.split()
            # "I: Retrieving libc6 2.36-9": the phase is "Retrieving", shown once
            if len(words) >= 2 and words[0] == "I:" and words[1] not in phases:
                phases.add(words[1])
                progress(f"  {line[3:]}")
    if process.returncode != 0:
        errors = [t for t in tail if t.startswith("E:")] or tail or ["no output"]
        raise ImageBuildError(
            f"debootstrap could not make the {suite} root file system (exit "
            f"{process.returncode}: {errors[-1][:200]}); check the suite name and the mirror "
            "(--suite, --mirror)."
        )


def trim(rootfs: Path) -> None:
    """Drop caches, manuals and translations; keep each package's copyright file.

    debootstrap copies this machine's host name and resolver settings in; they are not the
    image's (Docker mounts a container's own over them), so they go too.
    """
    (rootfs / "etc/hostname").write_text("localhost\n")
    (rootfs / "etc/resolv.conf").unlink(missing_ok=True)
    (rootfs / "etc/resolv.conf").write_text("")
    for name in TRIMMED:
        target = rootfs / name
        if target.is_dir() and not target.is_symlink():
            for child in target.iterdir():
                remove_path(child)
    docs = rootfs / "usr/share/doc"
    if docs.is_dir():
        for path in docs.rglob("*"):
            if path.is_file() and path.name != "copyright":
                path.unlink()


def remove_path(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def pack(rootfs: Path, archive: Path) -> None:
    # --one-file-system: anything still mounted inside (debootstrap's /proc) stays out
    packed = subprocess.run(
        [
            "tar",
            "--numeric-owner",
            "--one-file-system",
            "-C",
            str(rootfs),
            "-cf",
            str(archive),
            ".",
        ],
        capture_output=True,
        text=True,
    )
    if packed.returncode != 0:
        detail = (packed.stderr.strip().splitlines() or ["no output"])[-1]
        raise ImageBuildError(f"tar could not pack the root file system ({detail}).")


def import_archive(client: Any, archive: Path, tag: str, inputs: str) -> str:
    """``docker import`` of ``archive`` with a shell-free default command; the image id."""
    repository, name = split_tag(tag)
    changes = [
        "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "ENV LANG=C.UTF-8",
        'CMD ["python3"]',
        f"LABEL {ROLE_LABEL}={BASE_IMAGE_ROLE}",
        f"LABEL {INPUTS_LABEL}={inputs}",
    ]
    try:
        with archive.open("rb") as stream:
            answer = client.api.import_image(
                src=stream, repository=repository, tag=name, changes=changes
            )
    except (APIError, DockerException) as exc:
        raise ImageBuildError(f"the Docker engine refused the import ({exc}).") from None
    except OSError as exc:  # requests' connection errors are OSErrors
        raise ImageBuildError(
            f"the Docker engine stopped answering during the import ({exc.__class__.__name__})."
        ) from None
    found = re.search(r"sha256:[0-9a-f]{64}", str(answer))
    if found is None:
        raise ImageBuildError(f"the Docker engine did not import the image ({str(answer)[:200]}).")
    return found.group(0)


# ---------------------------------------------------------------- cleaning up


def mounts_under(folder: Path) -> list[Path]:
    """Mount points inside ``folder`` (debootstrap mounts /proc and /sys while it works)."""
    prefix = str(folder.resolve()) + "/"
    points: list[Path] = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        fields = line.split()
        if len(fields) > 1:
            point = fields[1].replace("\\040", " ")
            if point.startswith(prefix):
                points.append(Path(point))
    return points


def remove_work_folder(work: Path, progress: Progress) -> None:
    """Delete the temporary tree, but never through a mount (it could be the host's /dev).

    A debootstrap that failed half-way may leave /proc or a bind mount inside; those are
    unmounted first, deepest first, and if one stays the folder is left for a person.
    """
    for point in sorted(mounts_under(work), key=lambda p: len(p.parts), reverse=True):
        subprocess.run(["umount", "--lazy", str(point)], capture_output=True)
    if mounts_under(work):
        progress(f"warning: {work} still has file systems mounted inside; left in place")
        return
    shutil.rmtree(work, ignore_errors=True)
