"""Validators for everything that crosses the boundary (CLI, GUI forms, YAML import).

Each validator takes the raw value and the *field name the user sees*, returns the
normalised value, or raises ``ValidationError(field, what is allowed)``. Nothing is
stored unless it passed through here.
"""

from __future__ import annotations

import enum
import ipaddress
import re
import unicodedata
from typing import TypeVar

import idna

from app.models.base import NAME_KEY_LENGTH, name_key
from app.services.errors import ValidationError

# Characters refused in every one-line value:
# - all control characters but TAB: C0, DEL and C1 (U+0080-U+009F). CR and LF in a header
#   value let an attacker add headers (header injection); NUL and friends break SMTP and
#   databases alike; NEL (U+0085) and CSI (U+009B) are line breaks or terminal escapes to
#   some mail, log and console software.
# - U+2028/U+2029, the Unicode line and paragraph separators.
# - bidi embeddings, overrides and isolates (U+202A-U+202E, U+2066-U+2069): they reorder
#   how a sender name or subject is displayed, the "Trojan Source" spoofing trick. The
#   implicit marks (LRM, RLM, ALM) stay allowed, right-to-left names need them.
# - lone surrogates (U+D800-U+DFFF): they cannot be encoded as UTF-8, so they would crash
#   the SMTP or database layer later instead of being refused here.
_CONTROL = re.compile(
    r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
)
# Unicode's default-ignorable code points: drawn as nothing, so "s1" and "s1" + U+200B would
# look like one name but be two. Format characters (category Cf) are refused as well.
_INVISIBLE = re.compile(
    "[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f"
    "\u202a-\u202e\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufff8"
    "\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0000-\U000e0fff]"
)
# Bodies keep TAB, CR, LF and bidi controls (RTL text pasted from word processors has them).
_CONTROL_MULTILINE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
# Patterns are used with fullmatch(): "$" would also match before a trailing newline.
_LDH_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
# DNS record owner names may carry underscores (_dmarc, key1._domainkey, _SenderDomainRandom_).
_RECORD_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
# A last label that resolvers read as part of an IPv4 address: inet_aton() and the WHATWG
# URL parser take "127.1", "0x7f.1" and "1.2.3.0x4" as addresses, not as names.
_NUMERIC_LABEL = re.compile(r"[0-9]+|0x[0-9a-f]*")
# An IPv6 zone (fe80::1%eth0) is an interface name or number; ipaddress accepts any text.
_IPV6_ZONE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
# RFC 5322 dot-atom for the local part, ASCII only (no SMTPUTF8 promise to relays).
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_LOCAL_PART = re.compile(rf"{_ATEXT}+(?:\.{_ATEXT}+)*")
_USERNAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,98}[A-Za-z0-9])?")
# A selector is one or more labels ("key1", "s1.mail") in front of "._domainkey.": each label
# must be a valid DNS label, so no empty labels and no hyphen next to a dot.
_DKIM_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9_-]*[A-Za-z0-9])?")
# ASCII digits only ([0-9], not \d, which also matches Arabic-Indic and other digits).
_INTEGER = re.compile(r"(-?)([0-9]+)")
# Echoed input is cut to this many characters so a refusal stays one short line.
_SHOWN_LENGTH = 40

RECORD_TYPES = ("CNAME", "TXT", "MX", "A", "AAAA")

# Placeholders a DNS template may use, and what each becomes.
PLACEHOLDERS: dict[str, str] = {
    "_SenderDomain_": "the sender domain the user registered",
    "_SenderDomainHash_": "an unguessable Base64 token derived from the domain",
    "_SenderDomainRandom_": "a random 10-character label",
    "_Subdomain_": "the subdomain prefix (EMAILCAMPAIGN_DNS_SUBDOMAIN, default sl)",
    "_TrackPrefix_": "the tracking prefix (EMAILCAMPAIGN_DNS_TRACK_PREFIX, default track)",
    "_TrackMerge_": "the character joining prefix and subdomain (default -)",
    "_SenderTarget_": "the DNS settings' sender domain CNAME target",
    "_LinkTracker_": "the DNS settings' link tracker CNAME target",
    "_OpenTracker_": "the DNS settings' open tracker CNAME target",
    "_DkimSelector_": "the DNS settings' DKIM selector",
}
# Gateway templates have no tracking parameters, as in the reference.
GATEWAY_FORBIDDEN_PLACEHOLDERS = frozenset({"_TrackPrefix_", "_TrackMerge_"})
_PLACEHOLDER = re.compile(r"_[A-Z][A-Za-z]*_")

E = TypeVar("E", bound=enum.Enum)


def _shown(value: object) -> str:
    """The user's input as quoted in a message: repr (escapes every line break), cut short."""
    if value is None or isinstance(value, bool | float):
        return repr(value)
    if isinstance(value, int) and abs(value) < 10**15:
        return repr(int(value))
    if not isinstance(value, str):
        # Never repr() arbitrary objects: it may span lines, be huge, or raise (long ints).
        return f"a value of type {type(value).__name__}"
    # Cut by the length of the repr, not of the text: "\u200b" is one character but six
    # once escaped, so forty of them would still make a 240-character message.
    cut = value[:_SHOWN_LENGTH]
    while len(repr(cut)) > _SHOWN_LENGTH + 2:  # + 2 for the quotes
        cut = cut[:-1]
    return repr(cut + "…") if cut != value else repr(value)


def _as_text(value: object, field: str) -> str:
    if value is None:
        raise ValidationError(field, "a value is required.")
    if not isinstance(value, str):
        raise ValidationError(field, f"expected text, got {type(value).__name__}.")
    return value


def no_control_chars(value: str, field: str) -> str:
    """Refuse CR, LF, NUL and other control characters (header injection), see ``_CONTROL``."""
    match = _CONTROL.search(value)
    if match:
        raise ValidationError(
            field,
            f"contains the character U+{ord(match.group()):04X}; use one line of text "
            "without line breaks, control or bidi-override characters.",
        )
    return value


def name(value: object, field: str = "Name", max_length: int = 200) -> str:
    """A name things are found by: one line, visible characters only, not empty, at most
    ``max_length`` characters. Uniqueness compares ``models.base.name_key`` of it."""
    text = no_control_chars(_as_text(value, field), field).strip()
    if not text:
        raise ValidationError(field, "must not be empty.")
    if len(text) > max_length:
        raise ValidationError(field, f"must be at most {max_length} characters.")
    hidden = next(
        (ch for ch in text if _INVISIBLE.match(ch) or unicodedata.category(ch) == "Cf"), None
    )
    if hidden is not None:
        raise ValidationError(
            field,
            f"contains the invisible character U+{ord(hidden):04X}; names must look the way "
            "they are stored, so remove it.",
        )
    if len(name_key(text)) > NAME_KEY_LENGTH:
        raise ValidationError(
            field, f"is too long once normalised; use at most {max_length} plain characters."
        )
    return text


def header_value(value: object, field: str, max_length: int = 200) -> str:
    """Text that ends up in a mail header: one line, printable, bounded length."""
    text = no_control_chars(_as_text(value, field), field).strip()
    if len(text) > max_length:
        raise ValidationError(field, f"must be at most {max_length} characters.")
    return text


def multiline_text(value: object, field: str, max_length: int = 65_536) -> str:
    """Header/footer bodies: line breaks allowed, other control characters not."""
    text = _as_text(value, field)
    match = _CONTROL_MULTILINE.search(text)
    if match:
        raise ValidationError(
            field,
            f"contains the control character U+{ord(match.group()):04X}; "
            "only line breaks and tabs are allowed among control characters.",
        )
    if len(text) > max_length:
        raise ValidationError(field, f"must be at most {max_length} characters.")
    return text


def _idna_reason(exc: Exception) -> str:
    """Why IDNA refused a name, in words; idna's own text quotes the whole (maybe huge) label.

    ``code`` and ``codepoint`` are the stable error attributes of current idna releases
    (3.20 here); an idna without them gets the generic reason.
    """
    code = getattr(exc, "code", None)
    codepoint = getattr(exc, "codepoint", None)
    if isinstance(codepoint, int):
        where = "at that place" if code in ("contextj", "contexto") else "in a host name"
        return f"the character U+{codepoint:04X} is not allowed {where}"
    if code == "label_too_long":
        return "a label is longer than 63 characters"
    if code in ("domain_too_long", "input_too_long"):
        return "it is longer than 253 characters"
    if code in ("empty_label", "empty_domain"):
        return "it has an empty label (a leading dot or two dots in a row)"
    if code in ("hyphen_3_4", "hyphen_start_end"):
        return "a label starts or ends with a hyphen or has hyphens in its 3rd and 4th places"
    if code in ("invalid_alabel", "non_canonical_alabel", "invalid_ascii"):
        return "an xn-- label is not valid Punycode"
    if isinstance(code, str) and code.startswith("bidi"):
        return "it mixes left-to-right and right-to-left text in a way IDNA does not allow"
    return "it is not a valid internationalised domain name"


def _idna_ascii(
    text: str,
    field: str,
    *,
    allowed: str = "letters, digits and hyphens",
    example: str = "smtp.example.com",
) -> str:
    """Unicode or ASCII host name -> lower-case ASCII (punycode), IDNA 2008 with UTS 46.

    One trailing dot (the DNS root) is dropped; UTS 46 maps the ideographic and full-width
    full stops onto ".", so that is done after IDNA, not before.
    """
    try:
        ascii_name = idna.encode(text, uts46=True, transitional=False).decode("ascii")
    except (UnicodeError, ValueError) as exc:  # idna.IDNAError is a UnicodeError
        raise ValidationError(
            field,
            f"{_shown(text)} is not a valid host name because {_idna_reason(exc)}; use "
            f"{allowed} separated by dots, e.g. {example}.",
        ) from None
    ascii_name = ascii_name.lower()
    return ascii_name[:-1] if ascii_name.endswith(".") else ascii_name


def _check_labels(
    ascii_name: str,
    field: str,
    pattern: re.Pattern[str],
    what: str,
    *,
    allowed: str = "letters, digits and inner hyphens",
) -> None:
    if len(ascii_name) > 253:
        raise ValidationError(field, f"the {what} must be at most 253 characters long.")
    for label in ascii_name.split("."):
        if not label:
            raise ValidationError(
                field, f"the {what} must not contain empty labels (a leading dot or two dots)."
            )
        if len(label) > 63:
            raise ValidationError(field, f"each label of the {what} must be at most 63 characters.")
        if not pattern.fullmatch(label):
            raise ValidationError(
                field, f"label {_shown(label)} is not allowed in a {what}; use {allowed}."
            )
        if label.startswith("xn--"):
            # An A-label must decode to a valid U-label; "xn--zz" is no name at all.
            try:
                idna.ulabel(label)
            except (UnicodeError, ValueError):
                raise ValidationError(
                    field,
                    f"label {_shown(label)} is not valid Punycode; type the name in its "
                    "Unicode form instead.",
                ) from None


def hostname(value: object, field: str = "Host", *, allow_ip: bool = True) -> str:
    """An SMTP host: a DNS name (IDNA allowed) or, when ``allow_ip``, an IPv4/IPv6 address."""
    text = no_control_chars(_as_text(value, field), field).strip()
    if not text:
        raise ValidationError(field, "a host name or IP address is required.")
    if allow_ip:
        candidate = text[1:-1] if text.startswith("[") and text.endswith("]") else text
        try:
            address = ipaddress.ip_address(candidate)
        except ValueError:
            pass
        else:
            zone = address.scope_id if isinstance(address, ipaddress.IPv6Address) else None
            if zone is not None and not _IPV6_ZONE.fullmatch(zone):
                raise ValidationError(
                    field,
                    "the zone after % in an IPv6 address must be an interface name or "
                    "number, e.g. fe80::1%eth0.",
                )
            return str(address)
    if any(ch.isspace() for ch in text):
        raise ValidationError(field, "must not contain spaces.")
    # Only one trailing dot is the root; "example.com.." has an empty label and is refused.
    ascii_name = _idna_ascii(text, field)
    _check_labels(ascii_name, field, _LDH_LABEL, "host name")
    if _NUMERIC_LABEL.fullmatch(ascii_name.rsplit(".", 1)[-1]):
        raise ValidationError(
            field,
            f"{_shown(text)} looks like an incomplete or invalid IP address; use a full "
            "address such as 192.0.2.10 or a host name such as smtp.example.com.",
        )
    return ascii_name


def is_blank(value: object) -> bool:
    """What an optional field treats as not given: nothing, or only white space."""
    return value is None or (isinstance(value, str) and not value.strip())


def domain(value: object, field: str = "Domain") -> str:
    """A mail domain: at least two labels, never an IP address; returned in ASCII form."""
    ascii_name = hostname(value, field, allow_ip=False)
    if "." not in ascii_name:
        raise ValidationError(field, f"{ascii_name!r} needs at least two labels, e.g. example.com.")
    return ascii_name


def optional_domain(value: object, field: str) -> str | None:
    if is_blank(value):
        return None
    return domain(value, field)


def record_host(value: object, field: str = "Record host") -> str:
    """A rendered DNS owner name; underscores allowed (``_dmarc``, ``key1._domainkey``)."""
    text = no_control_chars(_as_text(value, field), field).strip()
    if not text:
        raise ValidationError(field, "must not be empty.")
    if any(ch.isspace() for ch in text):
        raise ValidationError(field, "must not contain spaces.")
    allowed = "letters, digits, hyphens and underscores"
    # Map the whole name first (UTS 46 turns "。" and "．" into "." and lower-cases), then
    # IDNA-encode label by label so underscore labels survive.
    try:
        mapped = idna.uts46_remap(text, std3_rules=False)
    except (UnicodeError, ValueError) as exc:
        raise ValidationError(
            field,
            f"{_shown(text)} is not a valid record host because {_idna_reason(exc)}; use "
            f"{allowed} separated by dots, e.g. _dmarc.example.com.",
        ) from None
    if mapped.endswith("."):  # one trailing dot is the DNS root
        mapped = mapped[:-1]
    encoded = []
    for label in mapped.split("."):
        if label.isascii() and not label.startswith("xn--"):
            encoded.append(label.lower())  # plain DNS label, may hold "_"; checked below
        else:
            encoded.append(_idna_ascii(label, field, allowed=allowed, example="_dmarc.example.com"))
    ascii_name = ".".join(encoded)
    _check_labels(ascii_name, field, _RECORD_LABEL, "record host", allowed=allowed)
    return ascii_name


def port(value: object, field: str = "Port") -> int:
    return bounded_int(value, field, minimum=1, maximum=65535)


def bounded_int(
    value: object, field: str, *, minimum: int = 0, maximum: int = 2_000_000_000
) -> int:
    refusal = ValidationError(field, f"must be a whole number from {minimum} to {maximum}.")
    if isinstance(value, bool):  # bool is an int subclass; True is no port number
        raise refusal
    if isinstance(value, str):
        # A regex, not lstrip("-").isdigit(): that let "--5" through to int(), which raised.
        match = _INTEGER.fullmatch(value.strip())
        if not match:
            raise refusal
        sign, digits = match.group(1), match.group(2).lstrip("0") or "0"
        # int() raises ValueError beyond 4300 digits (sys.int_info); more digits than the
        # widest bound has is out of range anyway, so refuse before converting.
        if len(digits) > len(str(max(abs(minimum), abs(maximum)))):
            raise refusal
        value = int(sign + digits)
    if not isinstance(value, int) or not minimum <= value <= maximum:
        raise refusal
    return int(value)  # a plain int, also for IntEnum and other int subclasses


def optional_limit(value: object, field: str) -> int | None:
    """A limit where empty or 0 means unlimited (stored as None)."""
    if is_blank(value):
        return None
    number = bounded_int(value, field, minimum=0)
    return number or None


# An SMTP timeout, stored or given for one test: long enough for a slow server far away,
# short enough that a silent one cannot hold a test (and a send engine worker) for good.
SMTP_TIMEOUT_MIN = 1
SMTP_TIMEOUT_MAX = 600


def timeout_seconds(value: object, field: str = "Timeout") -> int:
    return bounded_int(value, field, minimum=SMTP_TIMEOUT_MIN, maximum=SMTP_TIMEOUT_MAX)


def smtp_timeout(value: object, field: str = "Timeout") -> float:
    """Seconds per SMTP test stage: the stored servers' range, fractions allowed."""
    refusal = ValidationError(
        field, f"must be a number of seconds from {SMTP_TIMEOUT_MIN} to {SMTP_TIMEOUT_MAX}."
    )
    if isinstance(value, bool):
        raise refusal
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise refusal from None
    if not isinstance(value, int | float):
        raise refusal
    # A comparison, not math.isfinite(): NaN fails every comparison and so is refused too,
    # and an int too large for a float is compared exactly.
    if not SMTP_TIMEOUT_MIN <= value <= SMTP_TIMEOUT_MAX:
        raise refusal
    return float(value)


def envelope_address(value: object, field: str) -> str:
    """An address for MAIL FROM or RCPT TO as given: one line, nothing else checked.

    CR or LF would end the SMTP command early and smuggle in another (SMTP injection);
    the address itself is the server's to judge, since finding out is what a test is for.
    """
    text = no_control_chars(_as_text(value, field), field).strip()
    if not text:
        raise ValidationError(field, "must not be empty; give an address like name@example.com.")
    return text


def email_address(value: object, field: str = "Email") -> str:
    """``local@domain``; ASCII local part (dot-atom), IDNA domain returned as ASCII."""
    text = no_control_chars(_as_text(value, field), field).strip()
    if text.count("@") != 1:
        raise ValidationError(
            field, f"{_shown(text)} is not an e-mail address like name@example.com."
        )
    local, _, host = text.partition("@")
    if not local or len(local) > 64 or not _LOCAL_PART.fullmatch(local):
        raise ValidationError(
            field,
            f"the part before @ in {_shown(text)} must be 1-64 letters, digits or "
            "!#$%&'*+/=?^_`{|}~- separated by single dots.",
        )
    ascii_domain = domain(host, field)
    address = f"{local}@{ascii_domain}"
    if len(address) > 254:
        raise ValidationError(field, "must be at most 254 characters long.")
    return address


def optional_email(value: object, field: str) -> str | None:
    if is_blank(value):
        return None
    return email_address(value, field)


def username(value: object, field: str = "Username") -> str:
    text = _as_text(value, field).strip()
    if not _USERNAME.fullmatch(text):
        raise ValidationError(
            field,
            "use 1-100 letters, digits, dots, hyphens or underscores, "
            "starting and ending with a letter or digit.",
        )
    return text


def smtp_username(value: object, field: str = "SMTP username") -> str | None:
    if value is None:
        return None
    # Control characters first: "\r\n" is whitespace to strip() and must not read as "empty".
    text = no_control_chars(_as_text(value, field), field).strip()
    if not text:
        return None
    if len(text) > 320:
        raise ValidationError(field, "must be at most 320 characters.")
    return text


def smtp_password(value: object, field: str = "SMTP password") -> str:
    """Passwords keep their spaces, but CR/LF/NUL would break the AUTH exchange."""
    text = _as_text(value, field)
    if "\r" in text or "\n" in text or "\x00" in text:
        raise ValidationError(field, "must not contain line breaks or NUL characters.")
    if any("\ud800" <= ch <= "\udfff" for ch in text):
        # A lone surrogate cannot be encoded as UTF-8 for AUTH; it would crash there.
        raise ValidationError(field, "must not contain invalid Unicode (unpaired surrogates).")
    if len(text) > 1024:
        raise ValidationError(field, "must be at most 1024 characters.")
    return text


def choice(value: object, field: str, enum_type: type[E]) -> E:
    """One of an enumeration's values, case-insensitively."""
    if isinstance(value, enum_type):
        return value
    allowed = ", ".join(str(m.value) for m in enum_type)
    if isinstance(value, str):
        wanted = value.strip().lower()
        for member in enum_type:
            if str(member.value).lower() == wanted:
                return member
    raise ValidationError(field, f"{_shown(value)} is not one of: {allowed}.")


def record_type(value: object, field: str = "Record type") -> str:
    text = _as_text(value, field).strip().upper()
    if text not in RECORD_TYPES:
        raise ValidationError(field, f"{_shown(value)} is not one of: {', '.join(RECORD_TYPES)}.")
    return text


def dns_label(value: object, field: str, *, allow_empty: bool = True) -> str:
    """A subdomain or track prefix: one or more LDH labels, or empty when allowed."""
    text = no_control_chars(_as_text(value, field), field).strip().strip(".").lower()
    if not text:
        if allow_empty:
            return ""
        raise ValidationError(field, "must not be empty.")
    _check_labels(text, field, _LDH_LABEL, "DNS label")
    return text


def track_merge(value: object, field: str = "Track merge character") -> str:
    text = _as_text(value, field)
    if text not in ("", "-", "."):
        raise ValidationError(field, "must be '-', '.' or empty.")
    return text


def dkim_selector(value: object, field: str = "DKIM selector") -> str:
    text = _as_text(value, field).strip()
    if len(text) > 63 or not all(_DKIM_LABEL.fullmatch(part) for part in text.split(".")):
        raise ValidationError(
            field,
            "use up to 63 letters, digits, hyphens or underscores, in labels separated by "
            "single dots, e.g. key1.",
        )
    return text


def placeholders_in(text: str) -> list[str]:
    return _PLACEHOLDER.findall(text)


def template_text(
    value: object, field: str, *, gateway: bool = False, max_length: int = 2048
) -> str:
    """A template record host or value: known placeholders only, one line."""
    text = no_control_chars(_as_text(value, field), field).strip()
    if not text:
        raise ValidationError(field, "must not be empty.")
    if len(text) > max_length:
        raise ValidationError(field, f"must be at most {max_length} characters.")
    for token in placeholders_in(text):
        if token not in PLACEHOLDERS:
            raise ValidationError(
                field,
                f"unknown placeholder {_shown(token)}; allowed: {', '.join(PLACEHOLDERS)}.",
            )
        if gateway and token in GATEWAY_FORBIDDEN_PLACEHOLDERS:
            raise ValidationError(
                field, f"{token} is not available in gateway templates (they have no tracking)."
            )
    return text
