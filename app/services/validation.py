"""Validators for everything that crosses the boundary (CLI, GUI forms, YAML import).

Each validator takes the raw value and the *field name the user sees*, returns the
normalised value, or raises ``ValidationError(field, what is allowed)``. Nothing is
stored unless it passed through here.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from typing import TypeVar

import idna

from app.services.errors import ValidationError

# Control characters other than TAB. CR and LF in a header value let an attacker add
# headers (header injection); NUL and friends break SMTP and databases alike.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f\u2028\u2029\u0085]")
_CONTROL_MULTILINE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_LDH_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
# DNS record owner names may carry underscores (_dmarc, key1._domainkey, _SenderDomainRandom_).
_RECORD_LABEL = re.compile(r"^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$")
# RFC 5322 dot-atom for the local part, ASCII only (no SMTPUTF8 promise to relays).
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_LOCAL_PART = re.compile(rf"^{_ATEXT}+(?:\.{_ATEXT}+)*$")
_USERNAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,98}[A-Za-z0-9])?$")
_DKIM_SELECTOR = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$")

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


def _as_text(value: object, field: str) -> str:
    if value is None:
        raise ValidationError(field, "a value is required.")
    if not isinstance(value, str):
        raise ValidationError(field, f"expected text, got {type(value).__name__}.")
    return value


def no_control_chars(value: str, field: str) -> str:
    """Refuse CR, LF, NUL and other control characters (header injection)."""
    match = _CONTROL.search(value)
    if match:
        raise ValidationError(
            field,
            f"contains the control character U+{ord(match.group()):04X}; "
            "line breaks and control characters are not allowed here.",
        )
    return value


def name(value: object, field: str = "Name", max_length: int = 200) -> str:
    """A display name: one line, not empty, at most ``max_length`` characters."""
    text = no_control_chars(_as_text(value, field), field).strip()
    if not text:
        raise ValidationError(field, "must not be empty.")
    if len(text) > max_length:
        raise ValidationError(field, f"must be at most {max_length} characters.")
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
            field, f"contains the control character U+{ord(match.group()):04X}, which is not allowed."
        )
    if len(text) > max_length:
        raise ValidationError(field, f"must be at most {max_length} characters.")
    return text


def _idna_ascii(text: str, field: str) -> str:
    """Unicode or ASCII host name -> lower-case ASCII (punycode), IDNA 2008 with UTS 46."""
    try:
        ascii_name = idna.encode(text, uts46=True, transitional=False).decode("ascii")
    except (idna.IDNAError, UnicodeError, ValueError) as exc:
        raise ValidationError(
            field,
            f"{text!r} is not a valid host name ({exc}); use letters, digits and hyphens "
            "separated by dots, e.g. smtp.example.com.",
        ) from None
    return ascii_name.lower()


def _check_labels(ascii_name: str, field: str, pattern: re.Pattern[str], what: str) -> None:
    if len(ascii_name) > 253:
        raise ValidationError(field, f"{what} must be at most 253 characters long.")
    for label in ascii_name.split("."):
        if not label:
            raise ValidationError(field, f"{what} must not contain empty labels (two dots).")
        if len(label) > 63:
            raise ValidationError(field, f"each label of the {what} must be at most 63 characters.")
        if not pattern.match(label):
            raise ValidationError(
                field,
                f"label {label!r} is not allowed in a {what}; use letters, digits and inner hyphens.",
            )


def hostname(value: object, field: str = "Host", *, allow_ip: bool = True) -> str:
    """An SMTP host: a DNS name (IDNA allowed) or, when ``allow_ip``, an IPv4/IPv6 address."""
    text = no_control_chars(_as_text(value, field), field).strip()
    if not text:
        raise ValidationError(field, "a host name or IP address is required.")
    if allow_ip:
        candidate = text[1:-1] if text.startswith("[") and text.endswith("]") else text
        try:
            return str(ipaddress.ip_address(candidate))
        except ValueError:
            pass
    text = text.rstrip(".")
    if any(ch.isspace() for ch in text):
        raise ValidationError(field, "must not contain spaces.")
    ascii_name = _idna_ascii(text, field)
    _check_labels(ascii_name, field, _LDH_LABEL, "host name")
    if ascii_name.rsplit(".", 1)[-1].isdigit():
        raise ValidationError(field, f"{text!r} looks like an incomplete IP address.")
    return ascii_name


def domain(value: object, field: str = "Domain") -> str:
    """A mail domain: at least two labels, never an IP address; returned in ASCII form."""
    ascii_name = hostname(value, field, allow_ip=False)
    if "." not in ascii_name:
        raise ValidationError(field, f"{ascii_name!r} needs at least two labels, e.g. example.com.")
    return ascii_name


def optional_domain(value: object, field: str) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return domain(value, field)


def record_host(value: object, field: str = "Record host") -> str:
    """A rendered DNS owner name; underscores allowed (``_dmarc``, ``key1._domainkey``)."""
    text = no_control_chars(_as_text(value, field), field).strip().rstrip(".")
    if not text:
        raise ValidationError(field, "must not be empty.")
    if any(ch.isspace() for ch in text):
        raise ValidationError(field, "must not contain spaces.")
    labels = text.split(".")
    # IDNA-encode label by label so underscore labels survive.
    encoded = []
    for label in labels:
        if label and all(ch.isascii() for ch in label):
            encoded.append(label.lower())
        elif label:
            encoded.append(_idna_ascii(label, field))
        else:
            encoded.append(label)
    ascii_name = ".".join(encoded)
    _check_labels(ascii_name, field, _RECORD_LABEL, "record host")
    return ascii_name


def port(value: object, field: str = "Port") -> int:
    if isinstance(value, bool):
        raise ValidationError(field, "must be a whole number from 1 to 65535.")
    if isinstance(value, str):
        stripped = value.strip()
        if not stripped.isascii() or not stripped.isdigit():
            raise ValidationError(field, "must be a whole number from 1 to 65535.")
        value = int(stripped)
    if not isinstance(value, int) or not 1 <= value <= 65535:
        raise ValidationError(field, "must be a whole number from 1 to 65535.")
    return value


def bounded_int(
    value: object, field: str, *, minimum: int = 0, maximum: int = 2_000_000_000
) -> int:
    if isinstance(value, bool):
        raise ValidationError(field, f"must be a whole number from {minimum} to {maximum}.")
    if isinstance(value, str):
        stripped = value.strip()
        if not stripped.isascii() or not stripped.lstrip("-").isdigit() or not stripped:
            raise ValidationError(field, f"must be a whole number from {minimum} to {maximum}.")
        value = int(stripped)
    if not isinstance(value, int) or not minimum <= value <= maximum:
        raise ValidationError(field, f"must be a whole number from {minimum} to {maximum}.")
    return value


def optional_limit(value: object, field: str) -> int | None:
    """A limit where empty or 0 means unlimited (stored as None)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    number = bounded_int(value, field, minimum=0)
    return number or None


def timeout_seconds(value: object, field: str = "Timeout") -> int:
    return bounded_int(value, field, minimum=1, maximum=600)


def email_address(value: object, field: str = "Email") -> str:
    """``local@domain``; ASCII local part (dot-atom), IDNA domain returned as ASCII."""
    text = no_control_chars(_as_text(value, field), field).strip()
    if text.count("@") != 1:
        raise ValidationError(field, f"{text!r} is not an e-mail address like name@example.com.")
    local, _, host = text.partition("@")
    if not local or len(local) > 64 or not _LOCAL_PART.match(local):
        raise ValidationError(
            field,
            f"the part before @ in {text!r} must be 1-64 letters, digits or "
            "!#$%&'*+/=?^_`{|}~- separated by single dots.",
        )
    ascii_domain = domain(host, field)
    address = f"{local}@{ascii_domain}"
    if len(address) > 254:
        raise ValidationError(field, "must be at most 254 characters long.")
    return address


def optional_email(value: object, field: str) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return email_address(value, field)


def username(value: object, field: str = "Username") -> str:
    text = _as_text(value, field).strip()
    if not _USERNAME.match(text):
        raise ValidationError(
            field,
            "use 1-100 letters, digits, dots, hyphens or underscores, "
            "starting and ending with a letter or digit.",
        )
    return text


def smtp_username(value: object, field: str = "SMTP username") -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    text = no_control_chars(_as_text(value, field), field).strip()
    if len(text) > 320:
        raise ValidationError(field, "must be at most 320 characters.")
    return text


def smtp_password(value: object, field: str = "SMTP password") -> str:
    """Passwords keep their spaces, but CR/LF/NUL would break the AUTH exchange."""
    text = _as_text(value, field)
    if "\r" in text or "\n" in text or "\x00" in text:
        raise ValidationError(field, "must not contain line breaks or NUL characters.")
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
    raise ValidationError(field, f"{value!r} is not one of: {allowed}.")


def record_type(value: object, field: str = "Record type") -> str:
    text = _as_text(value, field).strip().upper()
    if text not in RECORD_TYPES:
        raise ValidationError(field, f"{value!r} is not one of: {', '.join(RECORD_TYPES)}.")
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
    if not _DKIM_SELECTOR.match(text):
        raise ValidationError(field, "use letters, digits, dots, hyphens or underscores, e.g. key1.")
    return text


def placeholders_in(text: str) -> list[str]:
    return _PLACEHOLDER.findall(text)


def template_text(value: object, field: str, *, gateway: bool = False, max_length: int = 2048) -> str:
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
                f"unknown placeholder {token}; allowed: {', '.join(PLACEHOLDERS)}.",
            )
        if gateway and token in GATEWAY_FORBIDDEN_PLACEHOLDERS:
            raise ValidationError(
                field, f"{token} is not available in gateway templates (they have no tracking)."
            )
    return text
