"""``postroom smtp-test``, ``servers test``, ``domains verify`` and ``dns-check``.

These are the live checks: each exits 0 only when everything passed. ``servers test`` and
``domains verify`` are plain commands here; their groups' modules add them.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import click

from app.cli.base import (
    State,
    emit,
    fail,
    json_option,
    kind_option,
    main,
    pass_state,
    read_password_stdin,
)

# ---------------------------------------------------------------- SMTP


def _smtp_human(report: Any) -> str:
    data = report.as_dict()
    lines = []
    for stage in data["stages"]:
        mark = "ok  " if stage["ok"] else "FAIL"
        lines.append(f"{mark} {stage['name']:<9} {stage['ms']:>7.1f} ms  {stage['detail']}")
    tls = data.get("tls")
    if tls:
        verified = "verified" if tls.get("verified") else "NOT verified"
        if tls.get("insecure_used"):
            verified += " (allow unverified certificate was on)"
        lines.append(
            f"TLS: {tls.get('version')} {tls.get('cipher')}; certificate {tls.get('subject')} "
            f"issued by {tls.get('issuer')}, expires {tls.get('not_after')}, {verified}"
        )
    if data.get("auth_mechanisms"):
        lines.append(f"AUTH offered: {' '.join(data['auth_mechanisms'])}")
    if data["ok"]:
        lines.append("SMTP test passed.")
    else:
        lines.append(f"SMTP test failed at {data['failed_stage']}: {data['hint']}")
    return "\n".join(lines)


def _print_stage_live(state: State) -> Any:
    """Stages as they complete, so a slow server shows where it is (not under --json)."""
    if state.json:
        return None

    def progress(stage: Any) -> None:
        mark = "ok  " if stage.ok else "FAIL"
        click.echo(f"{mark} {stage.name:<9} {stage.ms:>7.1f} ms  {stage.detail}")

    return progress


def _finish_smtp(state: State, report: Any, live: bool) -> None:
    if state.json:
        emit(state, report.as_dict())
    else:
        text = _smtp_human(report)
        if live:  # stages were printed already; show the summary lines only
            text = "\n".join(
                line for line in text.splitlines() if not line.startswith(("ok  ", "FAIL"))
            )
        click.echo(text)
    sys.exit(0 if report.ok else 1)


@main.command("smtp-test")
@click.option("--host", required=True, help="SMTP host name or IP address.")
@click.option("--port", type=int, required=True)
@click.option(
    "--encryption", type=click.Choice(["none", "ssl", "tls"], case_sensitive=False), required=True
)
@click.option("--username")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.option("--timeout", type=float, default=10.0, show_default=True, help="Seconds per stage.")
@click.option("--mail-from", help="Envelope sender for the MAIL FROM stage.")
@click.option("--rcpt", help="Also send a real test message to this address.")
@click.option("--insecure", is_flag=True, help="Do not verify the TLS certificate (reported).")
@click.option(
    "--cafile", type=click.Path(dir_okay=False, exists=True), help="Extra CA bundle to trust."
)
@json_option
@pass_state
def smtp_test(
    state: State,
    host: str,
    port: int,
    encryption: str,
    username: str | None,
    password_stdin: bool,
    timeout: float,
    mail_from: str | None,
    rcpt: str | None,
    insecure: bool,
    cafile: str | None,
) -> None:
    """Run a staged SMTP session against any server, without storing anything."""
    from app.services import validation
    from app.services.smtp_check import SmtpTarget, run_smtp_check

    password = read_password_stdin() if password_stdin else None
    if password is not None and not username:
        fail("--password-stdin needs --username; give the SMTP username too.")
    target = SmtpTarget(
        host=validation.hostname(host, "--host"),
        port=validation.port(port, "--port"),
        encryption=encryption.lower(),
        timeout=timeout,
        username=username,
        password=password,
        insecure=insecure,
        cafile=cafile,
    )
    live = _print_stage_live(state)
    report = asyncio.run(run_smtp_check(target, mail_from=mail_from, rcpt=rcpt, progress=live))
    _finish_smtp(state, report, live is not None)


@click.command("test")
@click.argument("name")
@click.option("--rcpt", help="Also send a real test message to this address.")
@click.option("--mail-from", help="Envelope sender (default: at the server's Mail From domain).")
@click.option(
    "--cafile", type=click.Path(dir_okay=False, exists=True), help="Extra CA bundle to trust."
)
@json_option
@pass_state
def servers_test(
    state: State, name: str, rcpt: str | None, mail_from: str | None, cafile: str | None
) -> None:
    """Test a stored delivery server and record the result on it (Test tab)."""
    from dataclasses import replace

    from app.services.servers import get_server
    from app.services.smtp_check import record_result, run_smtp_check, target_for_server
    from app.services.vault import open_vault

    with state.read() as session:
        server = get_server(session, name)
        cipher = None
        if server.auth_enabled and server.password_encrypted is not None:
            cipher = open_vault(session, create=False)
        target = target_for_server(server, cipher)
    if cafile:
        target = replace(target, cafile=cafile)
    live = _print_stage_live(state)
    report = asyncio.run(run_smtp_check(target, mail_from=mail_from, rcpt=rcpt, progress=live))
    with state.write() as session:
        record_result(session, name, report)
    _finish_smtp(state, report, live is not None)


# ---------------------------------------------------------------- DNS


def parse_nameserver(value: str | None) -> tuple[str, int] | None:
    """``ADDR``, ``ADDR:PORT`` or ``[IPv6]:PORT`` -> (address, port); port 53 by default."""
    import ipaddress

    if not value:
        return None
    text = value.strip()
    host, port = text, "53"
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.removeprefix(":") or "53"
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    try:
        address = str(ipaddress.ip_address(host))
    except ValueError:
        fail(f"--nameserver {value!r} must be an IP address, optionally with :PORT.")
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        fail(f"--nameserver {value!r} has an invalid port; use 1-65535.")
    return address, int(port)


def _dns_human(data: dict[str, Any]) -> str:
    lines = [f"{data['domain']}: {data['status']}"]
    if "domain_status" in data:
        lines[0] += f" (domain is {data['domain_status']})"
    if data.get("message"):
        # Why the domain as a whole could not be checked: said once, before the records.
        lines.append(data["message"])
    for record in data["records"]:
        unchecked = record["problem"] == "lookup_failed" and bool(data.get("message"))
        mark = "ok  " if record["ok"] else "----" if unchecked else "FAIL"
        found = ", ".join(record["found"]) or "nothing"
        lines.append(f"{mark} {record['type']:<5} {record['host']}")
        if unchecked:
            lines.append(f"       {record['detail']}")  # nothing was found or not found
        elif not record["ok"]:
            lines.append(f"       expected {record['expected']}, found {found}")
            lines.append(f"       {record['problem']}: {record['detail']}")
    for warning in data["warnings"]:
        lines.append(f"note {warning['check']} {warning['host']}: {warning['detail']}")
    return "\n".join(lines)


def _domain_status(state: State, domain: str, kind: str) -> str | None:
    from app.services.errors import NotFoundError
    from app.services.sender_domains import get_sender_domain

    with state.read() as session:
        try:
            return get_sender_domain(session, domain, kind).status.value
        except NotFoundError:
            return None


@click.command("verify")
@click.argument("domain", required=False)
@click.option("--all", "verify_all", is_flag=True, help="Verify every sender domain.")
@kind_option
@click.option(
    "--nameserver", metavar="ADDR[:PORT]", help="Ask this server instead of the authoritative ones."
)
@click.option("--concurrency", type=click.IntRange(1, 500), default=50, show_default=True)
@json_option
@pass_state
def domains_verify(
    state: State,
    domain: str | None,
    verify_all: bool,
    kind: str,
    nameserver: str | None,
    concurrency: int,
) -> None:
    """Check a domain's published records; all passing moves it to enabled."""
    from app.services import dns_verify
    from app.services.sender_domains import list_sender_domains

    if bool(domain) == verify_all:
        fail("give either a DOMAIN or --all.")
    server = parse_nameserver(nameserver)
    db = state.db()
    if domain:
        report = asyncio.run(dns_verify.verify_sender_domain(db, domain, kind, nameserver=server))
        data = report.as_dict()
        data["domain_status"] = _domain_status(state, domain, kind)
        emit(state, data, _dns_human)
        sys.exit(0 if report.status == "ok" else 1)
    with state.read() as session:
        names = [d.domain for d in list_sender_domains(session, kind=kind)]

    def progress(done: int, total: int, report: Any) -> None:
        if not state.json:
            click.echo(f"[{done}/{total}] {report.domain}: {report.status}", err=True)

    reports = asyncio.run(
        dns_verify.verify_many(
            db, names, kind=kind, concurrency=concurrency, progress=progress, nameserver=server
        )
    )
    rows = [r.as_dict() for r in reports]
    passed = sum(1 for r in reports if r.status == "ok")

    def summary(_rows: list[dict[str, Any]]) -> str:
        why = [f"{r.domain}: {r.error}" for r in reports if r.error]
        return "\n".join([*why, f"{passed} of {len(reports)} domain(s) passed."])

    emit(state, rows, summary)
    sys.exit(0 if passed == len(reports) else 1)


@main.command("dns-check")
@click.argument("domain")
@click.option("--template", "template_name", required=True, help="DNS template to check against.")
@kind_option
@click.option(
    "--nameserver", metavar="ADDR[:PORT]", help="Ask this server instead of the authoritative ones."
)
@json_option
@pass_state
def dns_check(
    state: State, domain: str, template_name: str, kind: str, nameserver: str | None
) -> None:
    """Check DOMAIN against a template's records without storing anything."""
    from app.services.dns_record_checks import check_template_adhoc, render_template_for_check

    server = parse_nameserver(nameserver)
    with state.read() as session:
        rendered, settings = render_template_for_check(session, domain, template_name, kind)
    report = asyncio.run(
        check_template_adhoc(domain, rendered, nameserver=server, settings=settings)
    )
    emit(state, report.as_dict(), _dns_human)
    sys.exit(0 if report.status == "ok" else 1)
