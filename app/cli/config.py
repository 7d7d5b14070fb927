"""``postroom config``: the whole configuration as YAML, out and back in."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from app.cli.base import State, emit, fail, json_option, main, pass_state


@main.group()
def config() -> None:
    """Export or import the whole configuration as YAML (secrets are never exported)."""


@config.command("export")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="File to write (default: standard output).",
)
@pass_state
def config_export(state: State, output: Path | None) -> None:
    """Write servers, groups, users, templates, DNS settings and domains as YAML."""
    from app.services.config_io import export_yaml

    with state.read() as session:
        text = export_yaml(session)
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        click.echo(f"Wrote {output}.", err=True)


@config.command("import")
@click.argument("source", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Show what would change and change nothing.")
@click.option("--yes", "-y", is_flag=True, help="Apply without asking.")
@json_option
@pass_state
def config_import(state: State, source: Path, dry_run: bool, yes: bool) -> None:
    """Show the changes SOURCE would make, then apply them in one transaction."""
    from app.services.config_io import apply_import, plan_import, read_config

    document = read_config(source)
    with state.read() as session:
        plan = plan_import(session, document)
    if state.json and (dry_run or not plan.changes):
        emit(state, plan.as_dict())
        return
    if not state.json:
        click.echo(plan.describe())
    if dry_run or not plan.changes:
        return
    if not yes:
        if not sys.stdin.isatty():
            fail("import needs confirmation; run it again with --yes to apply these changes.")
        click.confirm("Apply these changes?", abort=True)
    with state.write() as session:
        applied = apply_import(session, document)
    if state.json:
        emit(state, applied.as_dict())
    else:
        click.echo(f"Applied {len(applied.changes)} change(s) in one transaction.")
