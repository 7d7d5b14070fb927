"""SPF, DKIM and DMARC each want exactly one record at their host, and say so alike when
it is unreadable, missing or repeated (dns_auth_checks._one_record)."""

from __future__ import annotations

from typing import Any

import pytest

from app.services import dns_auth_checks
from app.services.dns_records import CheckWarning
from app.services.dns_wire import Answer

DOMAIN = "example.test"
SPF = "v=spf1 ip4:192.0.2.0/24 -all"
DMARC = "v=DMARC1; p=none;"
DKIM = "v=DKIM1; k=rsa; p=bm90IGEga2V5"


class StubLookup:
    """Answers every TXT question with the same values, or the same failure."""

    def __init__(self, *values: str, error: str | None = None) -> None:
        self.answer = Answer(name="", rcode=0, values=values, error=error)

    async def query(self, _zone: str, _host: str, _rtype: str) -> Answer:
        return self.answer

    async def resolve(self, _host: str, _rtype: str) -> Answer:
        return self.answer


async def _warnings(check: str, lookup: Any) -> list[CheckWarning]:
    if check == "spf":
        return await dns_auth_checks._check_spf(lookup, DOMAIN, DOMAIN, None, None)
    if check == "dkim":
        host = f"key1._domainkey.{DOMAIN}"
        return await dns_auth_checks._check_dkim(lookup, DOMAIN, host, None, None)
    return await dns_auth_checks._check_dmarc(lookup, DOMAIN, f"_dmarc.{DOMAIN}", None)


@pytest.mark.parametrize(("check", "record"), [("spf", SPF), ("dkim", DKIM), ("dmarc", DMARC)])
async def test_each_check_reports_an_unreadable_missing_or_repeated_record(
    check: str, record: str
) -> None:
    failed = await _warnings(check, StubLookup(error="timed out"))
    assert [(w.check, w.problem) for w in failed] == [(check, "lookup_failed")]
    assert f"The {check.upper()} record at " in failed[0].detail
    assert "could not be read (timed out); verify again later." in failed[0].detail

    missing = await _warnings(check, StubLookup("unrelated text"))
    assert [(w.check, w.problem) for w in missing] == [(check, "missing")]

    repeated = await _warnings(check, StubLookup(record, record, "unrelated text"))
    assert [(w.check, w.problem) for w in repeated] == [(check, "multiple")]
    assert f"has 2 {check.upper()} records" in repeated[0].detail

    for warning in failed + missing + repeated:
        assert warning.detail.endswith(".") and "\n" not in warning.detail
