"""Property tests for the boundary validators in ``app.services.validation``.

Every validator gets the same four kinds of check:

(a) hostile input (any Unicode text, control and format characters, lone surrogates, very
    long strings, non-text objects) never raises anything but ``ValidationError``;
(b) whatever is returned passes an independent check written here, not by calling the
    validator's own regular expressions, and validating it again gives it back unchanged;
(c) a refusal names the field, is a single printable line and stays short;
(d) known-good and known-bad examples behave as documented.
"""

from __future__ import annotations

import enum
import ipaddress
import re
import string
import unicodedata
from collections.abc import Callable
from typing import Any

import idna
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from app.services import validation as v
from app.services.errors import ValidationError

# The whole module must stay well under 30 s; each property runs a bounded number of times.
PROPERTY = settings(max_examples=150, deadline=None)
QUICK = settings(max_examples=60, deadline=None)

# ---------------------------------------------------------------------------- strategies

# Characters that have broken input validation somewhere before: line breaks of every kind,
# NUL and C0/C1 controls, bidi overrides and marks, zero-width characters, characters that
# UTS 46 maps onto dots or ASCII, homoglyphs, quoting and address punctuation.
TRICKY_CHARS = (
    "\r\n\x00\t\x0b\x0c\x1b\x1f\x7f\x85\x9b\u2028\u2029"  # line breaks and controls
    "\u200b\u200c\u200d\u200e\u200f\u061c\ufeff\u00ad"  # zero-width and bidi marks
    "\u202a\u202b\u202d\u202e\u2066\u2069"  # bidi embeddings, overrides, isolates
    "\u00a0\u3000\ufffd\uffff \u3002\uff0e\uff61\u2024\uff20"  # spaces, dot look-alikes
    ".@<>\"'\\`,;()_-[]:%/#*=+"  # address and quoting punctuation
    "ßẞüÜıİ\u212aﬁＡ１٣аеорοѕℓאب\u0301\u094d😀\U000e0041"  # case traps, homoglyphs
)
TRICKY = [
    *TRICKY_CHARS,
    *("\r\n", "..", "--", "xn--", "XN--", "xn--bcher-kva", "xn--zz", "0x", "0X1f", "%0d%0a"),
    *("_SenderDomain_", "_Subdomain_", "_TrackPrefix_", "_TrackMerge_", "_DkimSelector_"),
    *("_Unknown_", "_A_", "__", "=?utf-8?q?x?=", "Bcc: x@example.com"),
]
SURROGATES = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
ALNUM = string.ascii_letters + string.digits

tricky_text = st.lists(
    st.one_of(st.sampled_from(TRICKY), st.text(ALNUM, min_size=1, max_size=8)), max_size=14
).map("".join)
# Label-shaped pieces joined by dots with hostile characters mixed in, so that inputs get
# past the first checks and reach IDNA and the label rules.
dotted_text = st.lists(
    st.one_of(
        st.text(ALNUM + "-_", min_size=0, max_size=70),
        st.text("abcäöüßéñøåАаеорЁ\u200c\u200d\u0301", min_size=1, max_size=12),
        st.sampled_from(TRICKY),
    ),
    min_size=1,
    max_size=6,
).map(".".join)
long_text = st.builds(
    lambda unit, count, tail: unit * count + tail,
    st.sampled_from(["a", "a.", "ü", "9", "-", "_", "\u200b", "x" * 63 + ".", "ab\u0301"]),
    st.integers(min_value=30, max_value=3000),
    st.sampled_from(["", ".", ".com", "\n", "@example.com"]),
)
with_surrogate = st.builds(
    lambda head, mid, tail: head + mid + tail, st.text(max_size=6), SURROGATES, st.text(max_size=6)
)
hostile_text = st.one_of(
    st.text(),  # every category but surrogates
    st.text(st.characters(categories=["Cc", "Cf", "Zs", "Zl", "Zp", "Mn", "Co", "Cn"])),
    tricky_text,
    dotted_text,
    long_text,
    with_surrogate,
)
non_text = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.binary(max_size=8),
    st.lists(st.integers(), max_size=2),
    st.builds(object),
)
hostile = st.one_of(hostile_text, non_text)
fields = st.sampled_from(["Host", "SMTP host", "Sender domain", "Från-adress", "X"])

# ------------------------------------------------------------------- independent checks

KNOWN_PLACEHOLDER = re.compile(
    "|".join(re.escape(p) for p in sorted(v.PLACEHOLDERS, key=len, reverse=True))
)
PLACEHOLDER_SHAPE = re.compile(r"_[A-Z][A-Za-z]*_")
LDH = frozenset(string.ascii_lowercase + string.digits + "-")
SINGLE_LINE_FORBIDDEN = frozenset({"Cc", "Cs", "Zl", "Zp"})


def assert_good_error(err: ValidationError, field: str) -> None:
    """A refusal names the field, is one printable line, ends a sentence and stays short."""
    text = str(err)
    assert err.field == field
    assert text.startswith(f"{field}: "), text
    assert len(text.splitlines()) == 1, text
    assert text.isprintable(), text
    assert text.endswith("."), text
    assert "Traceback" not in text and "Error(" not in text, text
    assert len(text) <= len(field) + 400, text


def attempt(fn: Callable[..., Any], value: object, field: str, **kwargs: Any) -> tuple[bool, Any]:
    """Call a validator; only ``ValidationError`` may escape, and it must be well formed."""
    try:
        return True, fn(value, field, **kwargs)
    except ValidationError as err:
        assert_good_error(err, field)
        return False, None


def assert_single_line_text(text: str, *, allow_tab: bool = True) -> None:
    for ch in text:
        if ch == "\t" and allow_tab:
            continue
        assert unicodedata.category(ch) not in SINGLE_LINE_FORBIDDEN, repr(text)
    assert "\r" not in text and "\n" not in text
    text.encode("utf-8")  # raises UnicodeEncodeError on a lone surrogate


def is_numeric_label(label: str) -> bool:
    """A last label that resolvers would read as part of an IPv4 address (WHATWG URL)."""
    if label.isdigit():
        return True
    return label[:2] == "0x" and all(ch in string.hexdigits for ch in label[2:])


def assert_dns_name(name: str, *, extra: str = "", a_labels: bool = True) -> None:
    """ASCII, lower case, <= 253 characters, labels of 1-63 LDH characters, real A-labels."""
    assert isinstance(name, str)
    assert name.isascii() and name == name.lower(), name
    assert 0 < len(name) <= 253, name
    for label in name.split("."):
        assert 1 <= len(label) <= 63, name
        assert set(label) <= LDH | set(extra), name
        assert label[0] != "-" and label[-1] != "-", name
        if a_labels and label.startswith("xn--"):
            assert idna.decode(label)  # raises IDNAError on a bogus A-label


def assert_host_name(name: str) -> None:
    assert_dns_name(name)
    assert not is_numeric_label(name.rsplit(".", 1)[-1]), name


def assert_ip_text(text: str) -> None:
    assert text.isascii() and " " not in text
    assert str(ipaddress.ip_address(text)) == text


# ------------------------------------------------------------------- example tables

HOST_CASES = [
    ("Smtp.Example.COM.", "smtp.example.com"),
    ("  smtp.example.com  ", "smtp.example.com"),
    ("bücher.de", "xn--bcher-kva.de"),
    ("BÜCHER.de", "xn--bcher-kva.de"),
    ("xn--bcher-kva.de", "xn--bcher-kva.de"),
    ("bücher\u3002de", "xn--bcher-kva.de"),
    ("bücher.de\u3002", "xn--bcher-kva.de"),
    ("straße.de", "xn--strae-oqa.de"),
    ("localhost", "localhost"),
    ("mail-1.example.com", "mail-1.example.com"),
    ("[::1]", "::1"),
    ("::1", "::1"),
    ("[2001:DB8::1]", "2001:db8::1"),
    ("192.0.2.10", "192.0.2.10"),
    ("[192.0.2.10]", "192.0.2.10"),
    ("fe80::1%eth0", "fe80::1%eth0"),
]
HOST_REFUSED = [
    "",
    "   ",
    ".",
    "1.2.3",
    "123",
    "1.2.3.0x1",
    "0x7f000001",
    "256.1.1.1",
    "example..com",
    "example.com..",
    ".example.com",
    "-bad.example.com",
    "bad-.example.com",
    "under_score.example.com",
    "smtp example.com",
    "smtp.example.com\r\nRCPT TO:<x@evil>",
    "smtp.example.com\x00",
    "a" * 64 + ".com",
    ("a" * 63 + ".") * 4 + "com",
    "xn--zz.com",
    "xn--.com",
    "exa\u202emple.com",
    "exa\x85mple.com",
    "user@example.com",
    "<smtp.example.com>",
    '"smtp.example.com"',
    "[example.com]",
    "fe80::1%\u202e x",
    "fe80::1%eth 0",
    "\U0001f4a9.la",
]


class Colour(enum.StrEnum):
    RED = "red"
    DARK_BLUE = "Dark-Blue"


class Level(enum.Enum):
    LOW = 1
    HIGH = 2


# ===================================================================== (d) known examples


@pytest.mark.parametrize(("raw", "expected"), HOST_CASES)
def test_hostname_accepts_and_normalises(raw: str, expected: str) -> None:
    assert v.hostname(raw) == expected


@pytest.mark.parametrize("raw", HOST_REFUSED)
def test_hostname_refuses(raw: str) -> None:
    with pytest.raises(ValidationError) as info:
        v.hostname(raw, "SMTP host")
    assert_good_error(info.value, "SMTP host")


@pytest.mark.parametrize("raw", ["::1", "[::1]", "192.0.2.1", "1.2.3.4"])
def test_hostname_without_ip_refuses_addresses(raw: str) -> None:
    with pytest.raises(ValidationError):
        v.hostname(raw, "Host", allow_ip=False)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("Example.COM", "example.com"), ("bücher.de.", "xn--bcher-kva.de"), (" a.b ", "a.b")],
)
def test_domain_examples(raw: str, expected: str) -> None:
    assert v.domain(raw) == expected


@pytest.mark.parametrize("raw", ["localhost", "example", "192.0.2.1", "[::1]", "", None, 7])
def test_domain_refuses(raw: object) -> None:
    with pytest.raises(ValidationError):
        v.domain(raw, "Sender domain")


def test_optional_domain() -> None:
    assert v.optional_domain(None, "D") is None
    assert v.optional_domain("  ", "D") is None
    assert v.optional_domain("Example.org", "D") == "example.org"
    with pytest.raises(ValidationError):
        v.optional_domain("nope", "D")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("_DMARC.Example.com.", "_dmarc.example.com"),
        ("key1._domainkey.example.com", "key1._domainkey.example.com"),
        ("_spf.bücher.de", "_spf.xn--bcher-kva.de"),
        ("sl\u3002example.com", "sl.example.com"),
        ("track-sl.example.com", "track-sl.example.com"),
        ("@", None),
    ],
)
def test_record_host_examples(raw: str, expected: str | None) -> None:
    if expected is None:
        with pytest.raises(ValidationError):
            v.record_host(raw)
    else:
        assert v.record_host(raw) == expected


@pytest.mark.parametrize(
    "raw", ["", ".", "a..b", "a b.com", "-a.com", "xn--zz.example.com", "a\nb", "_x_.\u202e"]
)
def test_record_host_refuses(raw: str) -> None:
    with pytest.raises(ValidationError):
        v.record_host(raw, "Record host")


@pytest.mark.parametrize(("raw", "expected"), [("587", 587), (" 25 ", 25), (465, 465), (1, 1)])
def test_port_examples(raw: object, expected: int) -> None:
    result = v.port(raw)
    assert result == expected and type(result) is int


@pytest.mark.parametrize(
    "raw",
    [
        0,
        65536,
        "0",
        "65536",
        "5x",
        "",
        " ",
        "-1",
        "+25",
        "2.5",
        2.5,
        True,
        False,
        None,
        "٥٨٧",
        "５８７",
        "9" * 5000,
        "0x19",
        b"25",
    ],
)
def test_port_refuses(raw: object) -> None:
    with pytest.raises(ValidationError) as info:
        v.port(raw, "Port")
    assert_good_error(info.value, "Port")
    assert "1 to 65535" in str(info.value)


@pytest.mark.parametrize(
    ("raw", "expected"), [("0", None), (0, None), ("", None), (None, None), (" 10 ", 10), (5, 5)]
)
def test_optional_limit_examples(raw: object, expected: int | None) -> None:
    assert v.optional_limit(raw, "Daily limit") == expected


@pytest.mark.parametrize("raw", ["-1", -1, "--5", "-", "1e3", "x", True, 2.0, "9" * 5000])
def test_optional_limit_refuses(raw: object) -> None:
    with pytest.raises(ValidationError) as info:
        v.optional_limit(raw, "Daily limit")
    assert_good_error(info.value, "Daily limit")


@pytest.mark.parametrize(
    ("raw", "expected"), [("-5", -5), ("  -0 ", 0), ("007", 7), ("0" * 5000 + "3", 3)]
)
def test_bounded_int_examples(raw: str, expected: int) -> None:
    assert v.bounded_int(raw, "N", minimum=-10, maximum=10) == expected


def test_timeout_seconds() -> None:
    assert v.timeout_seconds("30") == 30
    for bad in ("0", "601", "-1", "x"):
        with pytest.raises(ValidationError):
            v.timeout_seconds(bad)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("user@Bücher.de", "user@xn--bcher-kva.de"),
        (" First.Last+tag@Example.COM ", "First.Last+tag@example.com"),
        ("o'brien@example.org.", "o'brien@example.org"),
        ("x@sub.xn--bcher-kva.de", "x@sub.xn--bcher-kva.de"),
    ],
)
def test_email_examples(raw: str, expected: str) -> None:
    assert v.email_address(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "user",
        "@example.com",
        "user@",
        "a@b@example.com",
        "user@localhost",
        "user@[192.0.2.1]",
        "user@192.0.2.1",
        "us er@example.com",
        ".user@example.com",
        "user.@example.com",
        "us..er@example.com",
        "üser@example.com",
        '"quoted"@example.com',
        "<user@example.com>",
        "Name <user@example.com>",
        "user@example.com\r\nBcc: victim@example.org",
        "user@example.com\u2028",
        "x" * 65 + "@example.com",
        "user@exa\u202emple.com",
    ],
)
def test_email_refuses(raw: str) -> None:
    with pytest.raises(ValidationError) as info:
        v.email_address(raw, "From address")
    assert_good_error(info.value, "From address")


def test_optional_email() -> None:
    assert v.optional_email(None, "Reply-To") is None
    assert v.optional_email(" ", "Reply-To") is None
    assert v.optional_email("a@B.org", "Reply-To") == "a@b.org"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("  Alice Example ", "Alice Example"), ("Jürgen\tMüller", "Jürgen\tMüller")],
)
def test_name_and_header_examples(raw: str, expected: str) -> None:
    assert v.name(raw) == expected
    assert v.header_value(raw, "Subject") == expected


def test_name_refuses_empty_and_long() -> None:
    for bad in ("", "   ", None, 5):
        with pytest.raises(ValidationError):
            v.name(bad)
    with pytest.raises(ValidationError):
        v.name("x" * 201)
    assert v.name("x" * 200) == "x" * 200
    assert v.header_value("", "Subject") == ""


@pytest.mark.parametrize(
    "raw", ["a\x9bb", "a\x85b", "a\u2028b", "a\u202eb", "a\u2066b", "a\ud800b", "a\x7fb"]
)
def test_header_value_refuses_controls_and_overrides(raw: str) -> None:
    with pytest.raises(ValidationError) as info:
        v.header_value(raw, "Subject")
    assert_good_error(info.value, "Subject")


def test_multiline_text() -> None:
    assert v.multiline_text("line 1\r\nline 2\n\tx", "Footer") == "line 1\r\nline 2\n\tx"
    for bad in ("a\x00b", "a\x9bb", "a\x1bb", "a\ud800b"):
        with pytest.raises(ValidationError):
            v.multiline_text(bad, "Footer")
    with pytest.raises(ValidationError):
        v.multiline_text("x" * 11, "Footer", max_length=10)


@pytest.mark.parametrize(
    ("raw", "ok"),
    [
        ("alice", True),
        (" a.b-c_d ", True),
        ("a", True),
        ("-a", False),
        ("a.", False),
        ("ä", False),
        ("a b", False),
        ("a" * 101, False),
        ("", False),
    ],
)
def test_username_examples(raw: str, ok: bool) -> None:
    if ok:
        assert v.username(raw) == raw.strip()
    else:
        with pytest.raises(ValidationError):
            v.username(raw)


def test_smtp_credentials() -> None:
    assert v.smtp_username(None) is None
    assert v.smtp_username("   ") is None
    assert v.smtp_username(" apikey ") == "apikey"
    assert v.smtp_password(" pass word ") == " pass word "
    assert v.smtp_password("") == ""
    for bad in ("a\rb", "a\nb", "a\x00b", "a\ud800b", "x" * 1025):
        with pytest.raises(ValidationError):
            v.smtp_password(bad)
    for bad in ("a\r\nb", "x" * 321, "a\ud800"):
        with pytest.raises(ValidationError):
            v.smtp_username(bad)


def test_choice_examples() -> None:
    assert v.choice(" RED ", "Colour", Colour) is Colour.RED
    assert v.choice("dark-blue", "Colour", Colour) is Colour.DARK_BLUE
    assert v.choice(Colour.RED, "Colour", Colour) is Colour.RED
    assert v.choice("1", "Level", Level) is Level.LOW
    with pytest.raises(ValidationError) as info:
        v.choice("green", "Colour", Colour)
    assert "red, Dark-Blue" in str(info.value)
    with pytest.raises(ValidationError):
        v.choice(Level.LOW, "Colour", Colour)


def test_record_type_examples() -> None:
    assert v.record_type(" txt ") == "TXT"
    assert v.record_type("aaaa") == "AAAA"
    for bad in ("SRV", "", "T XT", None):
        with pytest.raises(ValidationError):
            v.record_type(bad)


def test_dns_label_examples() -> None:
    assert v.dns_label("", "Subdomain") == ""
    assert v.dns_label(" SL ", "Subdomain") == "sl"
    assert v.dns_label("a.b", "Subdomain") == "a.b"
    for bad in ("a_b", "-a", "ä", "a..b", "xn--zz", "a\nb"):
        with pytest.raises(ValidationError):
            v.dns_label(bad, "Subdomain")
    with pytest.raises(ValidationError):
        v.dns_label("", "Subdomain", allow_empty=False)


def test_track_merge_examples() -> None:
    assert [v.track_merge(x) for x in ("", "-", ".")] == ["", "-", "."]
    for bad in (" ", "_", "--", None):
        with pytest.raises(ValidationError):
            v.track_merge(bad)


@pytest.mark.parametrize(
    ("raw", "ok"),
    [
        ("key1", True),
        ("s1.mail", True),
        ("Sel_2024", True),
        ("a..b", False),
        (".a", False),
        ("a.-b", False),
        ("a" * 64, False),
        ("", False),
        ("k y", False),
    ],
)
def test_dkim_selector_examples(raw: str, ok: bool) -> None:
    if ok:
        assert v.dkim_selector(raw) == raw
    else:
        with pytest.raises(ValidationError):
            v.dkim_selector(raw)


@pytest.mark.parametrize(
    ("raw", "gateway", "ok"),
    [
        ("_DMARC._Subdomain_._SenderDomain_", False, True),
        ("_DMARC._Subdomain_._SenderDomain_", True, True),
        ("_TrackPrefix__TrackMerge__Subdomain_._SenderDomain_", False, True),
        ("_TrackPrefix_._SenderDomain_", True, False),
        ("x_TrackMerge_y", True, False),
        ("_Unknown_._SenderDomain_", False, False),
        ("v=spf1 include:_spf.example.com ~all", False, True),
        ("", False, False),
        ("a\r\nb", False, False),
    ],
)
def test_template_text_examples(raw: str, gateway: bool, ok: bool) -> None:
    if ok:
        assert v.template_text(raw, "Record host", gateway=gateway) == raw
    else:
        with pytest.raises(ValidationError) as info:
            v.template_text(raw, "Record host", gateway=gateway)
        assert_good_error(info.value, "Record host")


def test_type_errors_are_validation_errors() -> None:
    for fn in (v.name, v.hostname, v.email_address, v.username, v.record_host):
        with pytest.raises(ValidationError, match="required"):
            fn(None, "F")
        with pytest.raises(ValidationError, match="text"):
            fn(b"x", "F")


# ============================================== (a)-(c) hostile input, checked results


@PROPERTY
@given(value=hostile, field=fields, allow_ip=st.booleans())
@example(value="fe80::1%\u202e x", field="Host", allow_ip=True)
@example(value="127.0.0.0x1", field="Host", allow_ip=True)
@example(value="example.com\u3002", field="Host", allow_ip=True)
def test_hostname_property(value: object, field: str, allow_ip: bool) -> None:
    ok, result = attempt(v.hostname, value, field, allow_ip=allow_ip)
    if not ok:
        return
    try:
        ipaddress.ip_address(result)
    except ValueError:
        assert_host_name(result)
    else:
        assert allow_ip
        assert_ip_text(result)
    assert v.hostname(result, field, allow_ip=allow_ip) == result


@PROPERTY
@given(value=hostile, field=fields)
def test_domain_property(value: object, field: str) -> None:
    ok, result = attempt(v.domain, value, field)
    if ok:
        assert_host_name(result)
        assert "." in result
        assert v.domain(result, field) == result
    ok, optional = attempt(v.optional_domain, value, field)
    if ok and optional is not None:
        assert optional == result


@PROPERTY
@given(value=hostile, field=fields)
@example(value="xn--zz._dmarc", field="R")
@example(value="a\u3002_b", field="R")
def test_record_host_property(value: object, field: str) -> None:
    ok, result = attempt(v.record_host, value, field)
    if ok:
        assert_dns_name(result, extra="_")
        assert v.record_host(result, field) == result


@PROPERTY
@given(value=hostile, field=fields)
@example(value="9" * 5000, field="Port")
def test_port_property(value: object, field: str) -> None:
    ok, result = attempt(v.port, value, field)
    if ok:
        assert type(result) is int and 1 <= result <= 65535
        assert not isinstance(value, bool)


@PROPERTY
@given(
    value=st.one_of(hostile, st.integers().map(str), st.integers().map(lambda n: f" {n} ")),
    field=fields,
    bounds=st.tuples(st.integers(-(10**6), 10**6), st.integers(0, 10**6)),
)
@example(value="--5", field="N", bounds=(0, 10))
@example(value="-" + "9" * 5000, field="N", bounds=(0, 10))
def test_bounded_int_property(value: object, field: str, bounds: tuple[int, int]) -> None:
    minimum, span = bounds
    maximum = minimum + span
    ok, result = attempt(v.bounded_int, value, field, minimum=minimum, maximum=maximum)
    if ok:
        assert type(result) is int and minimum <= result <= maximum
    if isinstance(value, str) and re.fullmatch(r"-?[0-9]{1,100}", value.strip()):
        assert ok == (minimum <= int(value) <= maximum)
    ok, limit = attempt(v.optional_limit, value, field)
    if ok:
        assert limit is None or (type(limit) is int and limit > 0)
    ok, timeout = attempt(v.timeout_seconds, value, field)
    if ok:
        assert 1 <= timeout <= 600


@PROPERTY
@given(value=hostile, field=fields)
def test_email_property(value: object, field: str) -> None:
    ok, result = attempt(v.email_address, value, field)
    if not ok:
        return
    assert isinstance(result, str) and result.isascii()
    assert result.count("@") == 1 and len(result) <= 254
    local, _, host = result.partition("@")
    assert 1 <= len(local) <= 64
    assert set(local) <= set(ALNUM + "!#$%&'*+/=?^_`{|}~-.")
    assert ".." not in local and local[0] != "." and local[-1] != "."
    assert_host_name(host)
    assert "." in host
    assert v.email_address(result, field) == result
    assert v.optional_email(value, field) == result


@PROPERTY
@given(value=hostile, field=fields, max_length=st.integers(1, 300))
@example(value="a\x9bb", field="Subject", max_length=200)
@example(value="a\ud800b", field="Subject", max_length=200)
def test_name_and_header_value_property(value: object, field: str, max_length: int) -> None:
    for fn, may_be_empty in ((v.header_value, True), (v.name, False)):
        ok, result = attempt(fn, value, field, max_length=max_length)
        if not ok:
            continue
        assert isinstance(result, str)
        assert_single_line_text(result)
        assert result == result.strip() and len(result) <= max_length
        assert may_be_empty or result
        assert fn(result, field, max_length=max_length) == result


@PROPERTY
@given(
    prefix=hostile_text,
    line_break=st.sampled_from(["\r", "\n", "\r\n", "\n\r"]),
    suffix=hostile_text,
    field=fields,
)
def test_line_breaks_are_always_refused(
    prefix: str, line_break: str, suffix: str, field: str
) -> None:
    """Header injection: a CR or LF anywhere, even where strip() would remove it, is refused."""
    value = prefix + line_break + suffix
    # username, dkim_selector, record_type and track_merge may strip a line break off the
    # ends; their own properties check that nothing they return contains one.
    single_line: list[Callable[..., Any]] = [
        v.header_value,
        v.name,
        v.hostname,
        v.domain,
        v.record_host,
        v.email_address,
        v.smtp_username,
        v.smtp_password,
        v.template_text,
        v.dns_label,
    ]
    for fn in single_line:
        with pytest.raises(ValidationError) as info:
            fn(value, field)
        assert_good_error(info.value, field)


@PROPERTY
@given(text=hostile_text, field=fields)
def test_any_control_character_is_refused_in_header_values(text: str, field: str) -> None:
    has_control = any(
        unicodedata.category(ch) in SINGLE_LINE_FORBIDDEN and ch != "\t" for ch in text
    )
    ok, _ = attempt(v.header_value, text, field, max_length=10**6)
    if has_control:
        assert not ok


@PROPERTY
@given(value=hostile, field=fields, max_length=st.integers(0, 400))
def test_multiline_text_property(value: object, field: str, max_length: int) -> None:
    ok, result = attempt(v.multiline_text, value, field, max_length=max_length)
    if ok:
        assert result == value and len(result) <= max_length
        for ch in result:
            assert ch in "\t\r\n" or unicodedata.category(ch) not in {"Cc", "Cs"}, repr(ch)


@PROPERTY
@given(value=hostile, field=fields)
def test_username_property(value: object, field: str) -> None:
    ok, result = attempt(v.username, value, field)
    if ok:
        assert 1 <= len(result) <= 100
        assert set(result) <= set(ALNUM + "._-")
        assert result[0] in ALNUM and result[-1] in ALNUM
        assert v.username(result, field) == result


@PROPERTY
@given(value=hostile, field=fields)
def test_smtp_credentials_property(value: object, field: str) -> None:
    ok, user = attempt(v.smtp_username, value, field)
    if ok and user is not None:
        assert_single_line_text(user)
        assert user == user.strip() and 0 < len(user) <= 320
        user.encode("utf-8")
    ok, password = attempt(v.smtp_password, value, field)
    if ok:
        assert password == value  # spaces and everything else are kept as typed
        assert not set(password) & {"\r", "\n", "\x00"} and len(password) <= 1024
        password.encode("utf-8")


@PROPERTY
@given(value=st.one_of(hostile, st.sampled_from(list(Colour) + list(Level))), field=fields)
def test_choice_and_record_type_property(value: object, field: str) -> None:
    ok, colour = attempt(v.choice, value, field, enum_type=Colour)
    if ok:
        assert isinstance(colour, Colour)
    ok, level = attempt(v.choice, value, field, enum_type=Level)
    if ok:
        assert isinstance(level, Level)
    ok, kind = attempt(v.record_type, value, field)
    if ok:
        assert kind in v.RECORD_TYPES


@PROPERTY
@given(value=hostile, field=fields, allow_empty=st.booleans())
@example(value="xn--zz", field="Subdomain", allow_empty=True)
def test_dns_label_property(value: object, field: str, allow_empty: bool) -> None:
    ok, result = attempt(v.dns_label, value, field, allow_empty=allow_empty)
    if not ok:
        return
    if result == "":
        assert allow_empty
    else:
        assert_dns_name(result)
    assert v.dns_label(result, field, allow_empty=allow_empty) == result


@PROPERTY
@given(value=hostile, field=fields)
@example(value="a..b", field="DKIM selector")
def test_dkim_selector_and_track_merge_property(value: object, field: str) -> None:
    ok, selector = attempt(v.dkim_selector, value, field)
    if ok:
        assert 1 <= len(selector) <= 63 and selector.isascii()
        # Placed before ._domainkey.<domain>, it must form valid DNS labels.
        assert_dns_name(selector.lower(), extra="_", a_labels=False)
        assert v.dkim_selector(selector, field) == selector
    ok, merge = attempt(v.track_merge, value, field)
    if ok:
        assert merge in ("", "-", ".")


@PROPERTY
@given(value=hostile, field=fields, gateway=st.booleans(), max_length=st.integers(1, 3000))
@example(value="_Subdomain_TrackPrefix_", field="Host", gateway=True, max_length=2048)
def test_template_text_property(value: object, field: str, gateway: bool, max_length: int) -> None:
    ok, result = attempt(v.template_text, value, field, gateway=gateway, max_length=max_length)
    if not ok:
        return
    assert_single_line_text(result)
    assert result == result.strip() and 0 < len(result) <= max_length
    # Scanned the way a renderer substitutes (known names, longest first, left to right):
    # no track placeholder in a gateway template, and nothing placeholder-shaped left over.
    found = KNOWN_PLACEHOLDER.findall(result)
    assert not (gateway and set(found) & v.GATEWAY_FORBIDDEN_PLACEHOLDERS), result
    assert not PLACEHOLDER_SHAPE.search(KNOWN_PLACEHOLDER.sub("\x00", result)), result
    assert v.template_text(result, field, gateway=gateway, max_length=max_length) == result


# ====================================== generated valid input: accepted and normalised

label = st.from_regex(r"[a-z0-9]{1,12}(-[a-z0-9]{1,6})?", fullmatch=True)
tld = st.from_regex(r"[a-z]{2,8}", fullmatch=True)
unicode_label = st.text("abcdeäöüéñøåþ", min_size=1, max_size=12)
local_part = st.lists(
    st.text(ALNUM + "!#$%&'*+/=?^_`{|}~-", min_size=1, max_size=10), min_size=1, max_size=3
).map(".".join)


def random_case(text: str, flips: list[bool]) -> str:
    return (
        "".join(ch.upper() if flips[i % len(flips)] else ch for i, ch in enumerate(text))
        if flips
        else text
    )


@QUICK
@given(
    labels=st.lists(st.one_of(label, unicode_label), min_size=1, max_size=4),
    last=tld,
    flips=st.lists(st.booleans(), max_size=8),
    trailing_dot=st.booleans(),
    padding=st.sampled_from(["", " ", "  \t"]),
)
def test_valid_host_names_round_trip(
    labels: list[str], last: str, flips: list[bool], trailing_dot: bool, padding: str
) -> None:
    canonical = ".".join([*labels, last])
    raw = padding + random_case(canonical, flips) + ("." if trailing_dot else "") + padding
    result = v.hostname(raw)
    assert_host_name(result)
    assert idna.decode(result) == canonical
    assert v.domain(raw) == result
    assert v.record_host(raw) == result


@QUICK
@given(
    local=local_part,
    labels=st.lists(st.one_of(label, unicode_label), min_size=1, max_size=3),
    last=tld,
    flips=st.lists(st.booleans(), max_size=5),
)
def test_valid_email_round_trip(
    local: str, labels: list[str], last: str, flips: list[bool]
) -> None:
    canonical_domain = ".".join([*labels, last])
    result = v.email_address(f"{local}@{random_case(canonical_domain, flips)}")
    assert result == f"{local}@{idna.encode(canonical_domain).decode('ascii')}"
    assert idna.decode(result.partition("@")[2]) == canonical_domain


@QUICK
@given(number=st.integers(-(10**30), 10**30), padding=st.sampled_from(["", " ", "\t "]))
def test_port_and_bounded_int_on_numbers(number: int, padding: str) -> None:
    in_port_range = 1 <= number <= 65535
    for raw in (number, f"{padding}{number}{padding}"):
        ok, result = attempt(v.port, raw, "Port")
        assert ok == in_port_range and (not ok or result == number)
        ok, result = attempt(v.bounded_int, raw, "N", minimum=-1000, maximum=1000)
        assert ok == (-1000 <= number <= 1000) and (not ok or result == number)


@QUICK
@given(
    parts=st.lists(
        st.one_of(
            st.sampled_from(sorted(v.PLACEHOLDERS)),
            st.sampled_from([".", "-", "_dmarc", "v=spf1 ", "sl"]),
        ),
        min_size=1,
        max_size=6,
    ),
    gateway=st.booleans(),
)
def test_known_placeholders_accepted(parts: list[str], gateway: bool) -> None:
    text = "".join(parts).strip()
    forbidden = gateway and any(p in v.GATEWAY_FORBIDDEN_PLACEHOLDERS for p in parts)
    ok, result = attempt(v.template_text, text, "Record value", gateway=gateway)
    if not text:
        assert not ok
    elif not forbidden:
        assert ok and result == text, text
    else:
        assert not ok
