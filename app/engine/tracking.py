"""Signed tokens for click, open and unsubscribe URLs, and signed VERP bounce addresses.

Decisions:

* Everything a tracking or bounce server later trusts is signed with keyed BLAKE2b (a MAC
  by design, RFC 7693; a quarter of HMAC-SHA256's cost, and a message has several tags)
  under the installation's tracking key, so nobody can forge a click (an open redirect),
  an open, an unsubscribe or a bounce for somebody else's recipient. The key is derived
  from the installation secret with a purpose label (HMAC-SHA256), so it is never the
  secret that keys ``_SenderDomainHash_`` itself.
* A URL token carries its payload (kind, campaign, item and, for clicks, the target URL)
  so the redirect needs no database and no copy of the campaign's HTML:
  ``base64url(payload) "." base64url(mac)``, 16 bytes of MAC.
* Addresses (VERP bounce addresses and the unsubscribe mailto) must survive mail systems
  that lower-case local parts, so their tags are hexadecimal and compared
  case-insensitively. A VERP address names the item and, when it fits in the 64 octets
  RFC 5321 allows a local part, the recipient (``bounce-<item>-<tag>-<local>=<domain>``);
  otherwise only the item (``bounce-<item>-<tag>``), which the queue maps to its recipient.
* Each purpose has its own BLAKE2b personalisation (token, bounce, unsubscribe), so a tag
  made for one purpose never verifies as another.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from dataclasses import dataclass, field
from enum import StrEnum

from app.services.errors import ValidationError

TOKEN_MAC_BYTES = 16
ADDRESS_TAG_BYTES = 5  # 10 hex digits: 40 bits, enough to make forging a bounce pointless
MIN_KEY_BYTES = 16
MAX_KEY_BYTES = 64  # BLAKE2b's key size
MAX_TOKEN_LENGTH = 16_384  # a token is read from a URL path: refuse absurd input early
MAX_LOCAL_PART = 64  # RFC 5321 4.5.3.1.1
VERP_PREFIX = "bounce-"
UNSUBSCRIBE_PREFIX = "unsub-"
_KEY_PURPOSE = b"postroom/tracking/v1"
_VERP_LOCAL = re.compile(r"bounce-([0-9]{1,19})-([0-9a-f]{10})(?:-(.+)=([^=]+))?", re.IGNORECASE)
_UNSUBSCRIBE_LOCAL = re.compile(r"unsub-([0-9]{1,19})-([0-9]{1,19})-([0-9a-f]{10})", re.IGNORECASE)


class TokenKind(StrEnum):
    CLICK = "c"
    OPEN = "o"
    UNSUBSCRIBE = "u"


@dataclass(frozen=True, slots=True)
class TrackingKey:
    """The secret that signs tokens and bounce addresses; never shown in a repr or log."""

    secret: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.secret, bytes) or not (
            MIN_KEY_BYTES <= len(self.secret) <= MAX_KEY_BYTES
        ):
            raise ValidationError(
                "Tracking key",
                f"must be {MIN_KEY_BYTES} to {MAX_KEY_BYTES} random bytes; derive it again.",
            )

    @classmethod
    def from_installation_secret(cls, hash_secret: str) -> TrackingKey:
        """Derive the key from ``Installation.hash_secret``, labelled for this one purpose."""
        if not hash_secret:
            raise ValidationError(
                "Installation secret", "is empty; open the database once with Postroom first."
            )
        return cls(hmac.digest(hash_secret.encode("utf-8"), _KEY_PURPOSE, "sha256"))


@dataclass(frozen=True, slots=True)
class TrackingPayload:
    """What a verified token says: which event, for which campaign item, and where to go."""

    kind: TokenKind
    campaign_id: int
    item_id: int
    url: str | None = None


@dataclass(frozen=True, slots=True)
class VerpAddress:
    """What a verified bounce address says; ``recipient`` is None in the compact form."""

    item_id: int
    recipient: str | None


# ---------------------------------------------------------------- encodings


_URLSAFE = bytes.maketrans(b"+/", b"-_")
_TOKEN = b"postroom-token"
_BOUNCE = b"postroom-bounce"
_UNSUBSCRIBE = b"postroom-unsub"


def _mac(key: TrackingKey, purpose: bytes, data: bytes, size: int) -> bytes:
    return hashlib.blake2b(data, digest_size=size, key=key.secret, person=purpose).digest()


def _b64(data: bytes) -> str:
    # binascii directly: base64.urlsafe_b64encode costs twice as much, per link per message.
    return binascii.b2a_base64(data, newline=False).rstrip(b"=").translate(_URLSAFE).decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _tag(key: TrackingKey, purpose: bytes, data: bytes) -> str:
    return _mac(key, purpose, data, ADDRESS_TAG_BYTES).hex()


def _refused(field_name: str) -> ValidationError:
    return ValidationError(
        field_name,
        "was not signed by this installation or was altered; ignore the request.",
    )


# ---------------------------------------------------------------- URL tokens


def payload_prefix(kind: TokenKind, campaign_id: int, item_id: int) -> bytes:
    """The start of every payload of one kind for one item; a click's adds ``|<url>``."""
    return f"{kind.value}|{campaign_id}|{item_id}".encode()


def token_payload(kind: TokenKind, campaign_id: int, item_id: int, url: str | None = None) -> bytes:
    """The bytes a token signs; ``url`` only for clicks."""
    head = payload_prefix(kind, campaign_id, item_id)
    return head if url is None else head + b"|" + url.encode("utf-8")


def sign_payload(key: TrackingKey, payload: bytes) -> str:
    """``base64url(payload).base64url(mac)``: safe in a URL path without escaping."""
    return f"{_b64(payload)}.{_b64(_mac(key, _TOKEN, payload, TOKEN_MAC_BYTES))}"


def make_token(
    key: TrackingKey, kind: TokenKind, campaign_id: int, item_id: int, url: str | None = None
) -> str:
    return sign_payload(key, token_payload(kind, campaign_id, item_id, url))


def verify_token(key: TrackingKey, token: str) -> TrackingPayload:
    """The payload of a token this key signed; ValidationError for anything else."""
    if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH or token.count(".") != 1:
        raise _refused("Tracking token")
    encoded, _, encoded_mac = token.partition(".")
    try:
        payload = _unb64(encoded)
        mac = _unb64(encoded_mac)
    except (binascii.Error, ValueError):
        raise _refused("Tracking token") from None
    expected = _mac(key, _TOKEN, payload, TOKEN_MAC_BYTES)
    # Only the canonical spelling verifies: base64 ignores stray trailing bits, so without
    # the re-encoding check two different tokens could carry one payload.
    canonical = _b64(payload) == encoded and _b64(mac) == encoded_mac
    if not hmac.compare_digest(mac, expected) or not canonical:
        raise _refused("Tracking token")
    return _parse_payload(payload)


def _parse_payload(payload: bytes) -> TrackingPayload:
    # Signed by us, so a malformed payload means a bug or a leaked key: refuse it all the same.
    try:
        text = payload.decode("utf-8")
        kind_text, campaign_text, item_text, *rest = text.split("|", 3)
        kind = TokenKind(kind_text)
        campaign_id, item_id = int(campaign_text), int(item_text)
    except ValueError:
        raise _refused("Tracking token") from None
    url = rest[0] if rest else None
    if (kind is TokenKind.CLICK) != (url is not None):
        raise _refused("Tracking token")
    return TrackingPayload(kind, campaign_id, item_id, url)


# ---------------------------------------------------------------- addresses


def _verp_mac_input(item_id: int, recipient: str) -> bytes:
    # Lower-cased: a relay that lower-cases the bounce address must not void the tag.
    return f"{item_id}|{recipient.lower()}".encode()


def verp_address(key: TrackingKey, item_id: int, recipient: str, host: str) -> str:
    """The envelope sender for one item: a bounce to it names the item and the recipient.

    ``recipient`` is ``local@ascii-domain`` as delivered; ``host`` the ASCII bounce host.
    """
    local, _, domain = recipient.rpartition("@")
    if local and domain:
        tag = _tag(key, _BOUNCE, _verp_mac_input(item_id, recipient))
        full = f"{VERP_PREFIX}{item_id}-{tag}-{local}={domain}"
        if len(full) <= MAX_LOCAL_PART:
            return f"{full}@{host}"
    compact_tag = _tag(key, _BOUNCE, _verp_mac_input(item_id, ""))
    return f"{VERP_PREFIX}{item_id}-{compact_tag}@{host}"


def parse_verp(key: TrackingKey, address: str) -> VerpAddress:
    """Read a bounce address made by ``verp_address``; ValidationError when forged or foreign."""
    if not isinstance(address, str):
        raise _refused("Bounce address")
    local = address.strip().strip("<>").rpartition("@")[0]
    match = _VERP_LOCAL.fullmatch(local)
    if match is None:
        raise _refused("Bounce address")
    item_text, tag, rcpt_local, rcpt_domain = match.groups()
    item_id = int(item_text)
    recipient = None if rcpt_local is None else f"{rcpt_local}@{rcpt_domain}"
    expected = _tag(key, _BOUNCE, _verp_mac_input(item_id, recipient or ""))
    if not hmac.compare_digest(tag.lower(), expected):
        raise _refused("Bounce address")
    return VerpAddress(item_id, recipient)


def unsubscribe_address(key: TrackingKey, campaign_id: int, item_id: int, host: str) -> str:
    """The List-Unsubscribe mailto address for one item (mail to it unsubscribes)."""
    tag = _tag(key, _UNSUBSCRIBE, f"{campaign_id}|{item_id}".encode())
    return f"{UNSUBSCRIBE_PREFIX}{campaign_id}-{item_id}-{tag}@{host}"


def parse_unsubscribe_address(key: TrackingKey, address: str) -> tuple[int, int]:
    """``(campaign_id, item_id)`` of an unsubscribe address this key signed."""
    if not isinstance(address, str):
        raise _refused("Unsubscribe address")
    local = address.strip().strip("<>").rpartition("@")[0]
    match = _UNSUBSCRIBE_LOCAL.fullmatch(local)
    if match is None:
        raise _refused("Unsubscribe address")
    campaign_id, item_id = int(match.group(1)), int(match.group(2))
    expected = _tag(key, _UNSUBSCRIBE, f"{campaign_id}|{item_id}".encode())
    if not hmac.compare_digest(match.group(3).lower(), expected):
        raise _refused("Unsubscribe address")
    return campaign_id, item_id
