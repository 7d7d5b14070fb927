"""``postroom sendengine``: the send-engine image and its base, made through the Docker API.

Progress lines go to standard error, so standard output holds only the result (JSON under
``--json``). The engine is the one ``DOCKER_HOST`` (and the TLS variables) name, as for the
Docker CLI.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from app.cli.base import State, emit, json_option, key_values, main, pass_state

if TYPE_CHECKING:
    from app.engine.images import ImageResult


@main.group()
def sendengine() -> None:
    """Send engines in containers: their image (and, later, starting and scaling them)."""


def progress(line: str) -> None:
    click.echo(line, err=True)


def show_result(state: State, made: ImageResult, what: str) -> None:
    def human(data: dict[str, Any]) -> str:
        verb = f"was built in {data['seconds']:.0f} s" if data["built"] else "is up to date"
        size = data["size_bytes"] / 1_000_000
        return "\n".join(
            [
                f"The {what} {data['tags'][0]} {verb}.",
                key_values(
                    {
                        "tags": ", ".join(data["tags"]),
                        "id": data["image_id"],
                        "size": f"{size:.0f} MB",
                    }
                ),
            ]
        )

    emit(state, made.as_dict(), human)


@sendengine.command("base")
@click.option("--tag", metavar="IMAGE", help="Name the image. Default: postroom/base:SUITE.")
@click.option("--suite", default="bookworm", show_default=True, help="The Debian release.")
@click.option(
    "--mirror",
    metavar="URL",
    help="The Debian mirror. Default: the one apt on this machine uses, else deb.debian.org.",
)
@click.option("--force", is_flag=True, help="Make it again even if nothing changed.")
@json_option
@pass_state
def sendengine_base(
    state: State, tag: str | None, suite: str, mirror: str | None, force: bool
) -> None:
    """Make a base image without a registry: debootstrap a minimal Debian with python3, then
    import it (needs root and debootstrap)."""
    from app.engine.base_image import make_base_image

    made = make_base_image(tag=tag, suite=suite, mirror=mirror, force=force, progress=progress)
    show_result(state, made, "base image")


@sendengine.command("build")
@click.option(
    "--base",
    metavar="IMAGE",
    default="python:3.11-slim",
    show_default=True,
    help="The image to build on: a Python 3.11 image from a registry, or the one "
    "`postroom sendengine base` made (postroom/base:bookworm).",
)
@click.option(
    "--tag",
    "tags",
    metavar="IMAGE",
    multiple=True,
    help="Name the image (repeatable). Default: postroom/sendengine:VERSION and :latest.",
)
@click.option("--force", is_flag=True, help="Build again, without the layer cache.")
@json_option
@pass_state
def sendengine_build(state: State, base: str, tags: tuple[str, ...], force: bool) -> None:
    """Build the send-engine image: a wheelhouse made here, then docker build through the API."""
    from app.engine.images import build_engine_image

    made = build_engine_image(base=base, tags=list(tags) or None, force=force, progress=progress)
    show_result(state, made, "send-engine image")
