"""Building one campaign message: headers, bodies, tracking and the VERP envelope sender.

Pure: no Qt, no database, no network. The worker turns the rows into the frozen inputs
below once per campaign (the ``*_for`` functions), prepares the campaign once
(``prepare_campaign``) and builds each item from it; ``build_message`` does both with a
small cache of prepared campaigns.

Decisions (the reference's fields, read for a console that has no subscriber lists):

* "Sender information" is the campaign's From name and address. Without an Enforced From
  Email the From header is that sender. With one, the enforced address is the From (that
  is what the relay accepts and what DMARC aligns to) and the sender goes into Reply-To,
  so replies still reach them. Use Sender Info as FROM keeps the sender's *name* on the
  enforced address ("Alice <enforced@relay>"); without it the enforced address stands
  alone. A Sender header is not used: it would repeat the enforced From.
* Envelope sender (VERP, see ``tracking``): at the sender domain's MFROM host when the
  campaign's From domain is an enabled sender domain with one; else, with Use Sender Info
  as MFROM, at the sender's own From domain; else at the server's Mail From domain; else
  at the From domain. The MFROM host is the sender domain's MFROM CNAME (``sender_domain_
  info_for`` finds it among the records rendered when the domain was created).
* Tracking is for marketing mail only: http(s) links in the HTML (header and footer
  included; plain text is left readable) go through ``https://<link host>/c/<token>``, an
  open pixel on ``https://<open host>/o/<token>`` goes before ``</body>``, and
  List-Unsubscribe names a signed mailto at the envelope host plus, when there is a link
  host, a one-click ``https://<link host>/u/<token>`` with List-Unsubscribe-Post (RFC
  8058). The reference has the sender domain's tracking CNAME route "click and open
  tracking", so an enabled sender domain's tracking host serves both when it has one; the
  server's Link / Open Tracking Domains otherwise. No host, no tracking of that kind.
* Header inputs are checked again here (CR, LF and other control characters refused with
  the creation-time sentence): policies may come from an import, and a header injection
  costs more than the check.
* Speed: the stock header registry parses and refolds every header on each access, about
  as slow as the rest of building together. So every header is rendered once, the
  campaign-wide ones per campaign through the stock registry itself, the per-item ones
  (To, Date, Message-ID, List-Unsubscribe: plain ASCII) directly, and kept as
  ``PreparedHeader`` values, which ``email.policy.EmailPolicy`` documents it passes
  through untouched (a value with a ``name`` is a header object; its ``fold`` is used).
  Bodies are quoted-printable UTF-8, so a boundary starting with ``=_`` can never occur in
  them. ``BuiltMessage.as_bytes()`` writes the same bytes ``message.as_bytes()`` does
  (tests compare them) without the generator; ``message`` is made on first use.
"""

from __future__ import annotations

import binascii
import html as html_lib
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.errors import MessageError
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP, Policy
from email.utils import format_datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from app.engine.tracking import (
    TokenKind,
    TrackingKey,
    make_token,
    payload_prefix,
    sign_payload,
    unsubscribe_address,
    verp_address,
)
from app.models.base import Channel, DomainStatus, TemplateKind
from app.services import validation
from app.services.errors import ValidationError

if TYPE_CHECKING:
    from app.models import Campaign, DeliveryServer, QueueItem, SenderDomain, UserGroup
    from app.services.dns_settings import EffectiveDnsSettings

DEFAULT_X_MAILER = "Postroom"  # the reference's "system default" when a group sets none
CHARSET = "utf-8"
MAX_SUBJECT = 998  # RFC 5322 line limit; campaigns.subject is as long
MAX_BODY = 20_000_000  # characters; a larger body is a mistake, not a newsletter
PREPARED_CAMPAIGNS = 64  # build_message's cache: campaigns a worker sends at once

_CRLF = "\r\n"
_ONE_CLICK = "List-Unsubscribe=One-Click"
# RFC 5322 dot-atom local part, ASCII (campaign creation accepts no other).
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_LOCAL_PART = re.compile(rf"{_ATEXT}+(?:\.{_ATEXT}+)*")
_LDH_DOMAIN = re.compile(
    r"(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9](?:[a-z0-9-]*[a-z0-9])?"
)
# id-left@id-right of a Message-ID: printable ASCII without <, > and a second @.
_MESSAGE_ID = re.compile(r"<?([!-;=?A-~]+@[!-;=?A-~]+)>?")
_BODY_OPEN = re.compile(r"<body\b[^>]*>", re.IGNORECASE)
_BODY_CLOSE = re.compile(r"</body\s*>", re.IGNORECASE)
_HREF = re.compile(
    r"""(<(?:a|area)\b[^>]*?\shref\s*=\s*)("[^"]*"|'[^']*'|[^\s"'=<>`]+)""", re.IGNORECASE
)
_NEWLINES = re.compile(r"\r\n?")


# ---------------------------------------------------------------- inputs


@dataclass(frozen=True, slots=True)
class SenderPolicy:
    """What the sender's user group adds to every message (its Email Headers settings)."""

    x_mailer: str | None = None
    text_header: str | None = None
    text_footer: str | None = None
    html_header: str | None = None
    html_footer: str | None = None


@dataclass(frozen=True, slots=True)
class ServerPolicy:
    """The delivery server's Domains tab: tracking, bounce and From enforcement."""

    enforced_from_email: str | None = None
    sender_info_as_from: bool = False
    sender_info_as_mfrom: bool = False
    link_tracking_domain: str | None = None
    open_tracking_domain: str | None = None
    mail_from_domain: str | None = None


@dataclass(frozen=True, slots=True)
class SenderDomainInfo:
    """A sender domain as sending needs it: is it usable, and where its CNAMEs point."""

    domain: str
    enabled: bool
    mfrom_host: str | None
    tracking_host: str | None = None


@dataclass(frozen=True, slots=True)
class CampaignContent:
    """What every message of one campaign shares."""

    campaign_id: int
    channel: Channel
    from_email: str
    from_name: str | None
    subject: str
    text: str | None
    html: str | None


@dataclass(frozen=True, slots=True)
class MessageSpec:
    """One queue item: the campaign's content for one recipient."""

    content: CampaignContent
    item_id: int
    recipient: str
    message_id: str  # deterministic per item, so a retry repeats it


class PreparedHeader(str):
    """A header rendered once: the ``str`` is its value, ``fold`` gives its wire form.

    ``email.policy.EmailPolicy`` stores, fetches and folds any value with a ``name`` as a
    header object without parsing it again, which is what makes reuse cheap.
    """

    name: str
    wire: str  # "Name: value\r\n", folded, ASCII
    defects: tuple[()] = ()

    def __new__(cls, name: str, value: str, wire: str) -> PreparedHeader:
        header = super().__new__(cls, value)
        header.name = name
        header.wire = wire
        return header

    def __reduce__(self) -> tuple[type[PreparedHeader], tuple[str, str, str]]:
        # copy.deepcopy and pickle would otherwise call __new__ with the value alone.
        return (PreparedHeader, (self.name, str(self), self.wire))

    def fold(self, *, policy: Policy) -> str:
        linesep = policy.linesep
        return self.wire if linesep == _CRLF else self.wire.replace(_CRLF, linesep)


@dataclass(frozen=True, slots=True)
class _Part:
    content_type: PreparedHeader
    encoding: PreparedHeader
    payload: str  # quoted-printable, "\n" line ends


_TEXT_TYPE = PreparedHeader(
    "Content-Type",
    f'text/plain; charset="{CHARSET}"',
    f'Content-Type: text/plain; charset="{CHARSET}"\r\n',
)
_HTML_TYPE = PreparedHeader(
    "Content-Type",
    f'text/html; charset="{CHARSET}"',
    f'Content-Type: text/html; charset="{CHARSET}"\r\n',
)
_QP = PreparedHeader(
    "Content-Transfer-Encoding",
    "quoted-printable",
    "Content-Transfer-Encoding: quoted-printable\r\n",
)
_MIME_VERSION = PreparedHeader("MIME-Version", "1.0", "MIME-Version: 1.0\r\n")
_ONE_CLICK_HEADER = PreparedHeader(
    "List-Unsubscribe-Post", _ONE_CLICK, f"List-Unsubscribe-Post: {_ONE_CLICK}\r\n"
)


class BuiltMessage:
    """One message ready for SMTP: its bytes, its envelope, and an ``EmailMessage`` view."""

    __slots__ = ("_body", "_data", "_headers", "_message", "envelope_from", "recipients")

    def __init__(
        self,
        headers: list[PreparedHeader],
        body: _Part | tuple[PreparedHeader, str, tuple[_Part, ...]],
        envelope_from: str,
        recipients: tuple[str, ...],
    ) -> None:
        self._headers = headers
        self._body = body
        self._data: bytes | None = None
        self._message: EmailMessage | None = None
        self.envelope_from = envelope_from
        self.recipients = recipients

    @property
    def headers(self) -> list[tuple[str, str]]:
        """``(name, value)`` of every top-level header, in order, values decoded."""
        return [(h.name, str(h)) for h in self._all_headers()]

    def _all_headers(self) -> list[PreparedHeader]:
        if isinstance(self._body, _Part):
            return [*self._headers, self._body.content_type, self._body.encoding]
        return [*self._headers, self._body[0]]

    def as_bytes(self) -> bytes:
        """The message as sent (CRLF line ends), byte for byte ``message.as_bytes()``."""
        if self._data is None:
            self._data = self._render()
        return self._data

    def _render(self) -> bytes:
        out = [h.wire for h in self._all_headers()]
        out.append(_CRLF)
        if isinstance(self._body, _Part):
            out.append(self._body.payload.replace("\n", _CRLF))
        else:
            _, boundary, parts = self._body
            for number, part in enumerate(parts):
                out.append(f"--{boundary}{_CRLF}" if number == 0 else f"{_CRLF}--{boundary}{_CRLF}")
                out += (part.content_type.wire, part.encoding.wire, _CRLF)
                out.append(part.payload.replace("\n", _CRLF))
            out.append(f"{_CRLF}--{boundary}--{_CRLF}")
        return "".join(out).encode("ascii")

    @property
    def message(self) -> EmailMessage:
        """The message as an ``EmailMessage`` (policy SMTP), made on first use.

        Its header values are the rendered ``PreparedHeader`` strings, not the registry's
        structured objects; parse ``as_bytes()`` when addresses are needed as objects.
        """
        if self._message is None:
            self._message = self._make_message()
        return self._message

    def _make_message(self) -> EmailMessage:
        message = EmailMessage(policy=SMTP)
        for header in self._all_headers():
            message.set_raw(header.name, header)
        if isinstance(self._body, _Part):
            message.set_payload(self._body.payload)
            return message
        for part in self._body[2]:
            sub = EmailMessage(policy=SMTP)
            sub.set_raw(part.content_type.name, part.content_type)
            sub.set_raw(part.encoding.name, part.encoding)
            sub.set_payload(part.payload)
            message.attach(sub)
        return message


# ---------------------------------------------------------------- checks


def _identifier(value: object, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValidationError(field, f"must be a whole number of 0 or more, got {value!r}.")
    return value


def _body_text(value: object, field: str, max_length: int = MAX_BODY) -> str | None:
    """A body, header or footer: any text UTF-8 can carry (quoted-printable encodes it)."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValidationError(field, f"expected text, got {type(value).__name__}.")
    if len(value) > max_length:
        raise ValidationError(field, f"must be at most {max_length} characters.")
    try:
        value.encode(CHARSET)
    except UnicodeEncodeError:
        raise ValidationError(
            field, "contains characters that cannot be written as UTF-8; paste the text again."
        ) from None
    return _NEWLINES.sub("\n", value)


@lru_cache(maxsize=4096)
def _ascii_domain(domain: str, field: str) -> str:
    # Recipients repeat a few domains (gmail.com...), so IDNA runs once per domain.
    return validation.domain(domain, field)


def recipient_address(value: object, field: str = "Recipient") -> str:
    """``local@domain`` with the domain as lower-case IDNA ASCII, as SMTP and To need it."""
    text = validation.no_control_chars(value, field) if isinstance(value, str) else value
    if not isinstance(text, str):
        raise ValidationError(field, f"expected an address, got {type(value).__name__}.")
    local, at, domain = text.strip().rpartition("@")
    if not at or len(local) > 64 or not _LOCAL_PART.fullmatch(local):
        raise ValidationError(
            field,
            f"{text!r} is not an address like name@example.com with letters, digits or "
            "!#$%&'*+/=?^_`{|}~- before the @.",
        )
    lowered = domain.lower()
    if not (lowered.isascii() and _LDH_DOMAIN.fullmatch(lowered) and len(lowered) <= 253):
        lowered = _ascii_domain(domain, field)
    return f"{local}@{lowered}"


def message_id_header(value: object) -> str:
    """A Message-ID as ``<left@right>``; accepts it with or without the angle brackets."""
    field = "Message-ID"
    text = validation.no_control_chars(value, field) if isinstance(value, str) else None
    match = _MESSAGE_ID.fullmatch(text.strip()) if text is not None else None
    if match is None:
        raise ValidationError(
            field, f"{value!r} is not like <unique@host.example>; give the item its Message-ID."
        )
    return f"<{match.group(1)}>"


# ---------------------------------------------------------------- campaign preparation


@dataclass(frozen=True, slots=True)
class _Html:
    """The HTML body split at the places that differ per item.

    ``literals[i]`` is followed by ``slots[i]``: ``b"|" + url`` to sign for a click, or
    None for the open pixel; ``len(literals) == len(slots) + 1``.
    """

    literals: tuple[str, ...]
    slots: tuple[bytes | None, ...]  # a click's URL as UTF-8, or None for the pixel


def _wrap_text(header: str | None, body: str, footer: str | None) -> str:
    parts = [p if p.endswith("\n") else p + "\n" for p in (header, body, footer) if p]
    return "".join(parts) or "\n"


def _wrap_html(header: str | None, body: str, footer: str | None) -> tuple[str, int]:
    """The body with the group's header after ``<body>`` and footer before ``</body>``.

    Returns the HTML and where ``</body>`` now starts (the end when there is none), which
    is where the open pixel goes.
    """
    if header:
        opening = _BODY_OPEN.search(body)
        at = opening.end() if opening else 0
        body = body[:at] + header + body[at:]
    closings = list(_BODY_CLOSE.finditer(body))
    at = closings[-1].start() if closings else len(body)
    if footer:
        body = body[:at] + footer + body[at:]
        at += len(footer)
    return body, at


def _trackable(raw_value: str) -> str | None:
    value = raw_value[1:-1] if raw_value[:1] in "\"'" else raw_value
    url = html_lib.unescape(value).strip()
    scheme = url[:8].lower()
    return url if scheme.startswith(("http://", "https://")) else None


def _split_links(html: str, literals: list[str], slots: list[bytes | None]) -> None:
    """Append ``html`` to ``literals``/``slots`` with each http(s) href made a slot."""
    position = 0
    for match in _HREF.finditer(html):
        url = _trackable(match.group(2))
        if url is None:
            continue
        literals[-1] += html[position : match.end(1)] + '"'
        slots.append(b"|" + url.encode(CHARSET))
        literals.append('"')
        position = match.end(2)
    literals[-1] += html[position:]


def _html_template(html: str, pixel_at: int | None, track_links: bool) -> _Html:
    literals: list[str] = [""]
    slots: list[bytes | None] = []
    pieces = [html] if pixel_at is None else [html[:pixel_at], html[pixel_at:]]
    for number, piece in enumerate(pieces):
        if number:
            slots.append(None)
            literals.append("")
        if track_links:
            _split_links(piece, literals, slots)
        else:
            literals[-1] += piece
    return _Html(tuple(literals), tuple(slots))


def _quoted_printable(text: str) -> str:
    return binascii.b2a_qp(text.encode(CHARSET), istext=True).decode("ascii")


def _stock_header(name: str, value: Any, field: str) -> PreparedHeader:
    """Render a header once with the standard library (RFC 2047 words, folding)."""
    try:
        header = SMTP.header_factory(name, value)
        wire = header.fold(policy=SMTP)
    except (MessageError, ValueError, TypeError, IndexError) as exc:
        raise ValidationError(field, f"cannot be written as a mail header ({exc}).") from None
    if header.defects:
        raise ValidationError(field, f"is not a valid {name} header ({header.defects[0]}).")
    return PreparedHeader(name, str(header), wire)


def _address(name: str | None, address: str, field: str) -> Address:
    local, _, domain = address.rpartition("@")
    try:
        return Address(display_name=name or "", username=local, domain=domain)
    except (ValueError, TypeError) as exc:
        raise ValidationError(field, f"cannot be written as an address ({exc}).") from None


@dataclass(frozen=True, slots=True)
class _Hosts:
    envelope: str  # where bounces and the unsubscribe mailto go
    links: str | None
    opens: str | None


def _hosts(
    channel: Channel,
    from_domain: str,
    server: ServerPolicy,
    domain: SenderDomainInfo | None,
) -> _Hosts:
    usable = domain if domain is not None and domain.enabled else None
    if usable is not None and _ascii_domain(usable.domain, "Sender domain") != from_domain:
        usable = None  # information about another domain says nothing about this From
    mfrom = _optional_host(usable.mfrom_host, "Sender domain MFROM host") if usable else None
    tracking = (
        _optional_host(usable.tracking_host, "Sender domain tracking host") if usable else None
    )
    mail_from = _optional_host(server.mail_from_domain, "Mail From Domain")
    if mfrom:
        envelope = mfrom
    elif server.sender_info_as_mfrom:
        envelope = from_domain
    else:
        envelope = mail_from or from_domain
    if channel is not Channel.MARKETING:
        return _Hosts(envelope, None, None)
    links = tracking or _optional_host(server.link_tracking_domain, "Link Tracking Domain")
    opens = tracking or _optional_host(server.open_tracking_domain, "Open Tracking Domain")
    return _Hosts(envelope, links, opens)


def _optional_host(value: str | None, field: str) -> str | None:
    if value is None or not value.strip():
        return None
    return _ascii_domain(value.strip(), field)


class PreparedCampaign:
    """Everything campaign-wide rendered and checked once; ``build`` adds one recipient."""

    __slots__ = (
        "_boundary_prefix",
        "_campaign_id",
        "_click_base",
        "_from",
        "_hosts",
        "_html",
        "_html_payload",
        "_key",
        "_marketing",
        "_pixel_base",
        "_subject",
        "_tail",
        "_text",
    )

    def __init__(
        self,
        content: CampaignContent,
        sender: SenderPolicy,
        server: ServerPolicy,
        domain: SenderDomainInfo | None,
        key: TrackingKey,
    ) -> None:
        if not isinstance(key, TrackingKey):
            raise ValidationError("Tracking key", "is missing; derive it from the installation.")
        self._key = key
        self._campaign_id = _identifier(content.campaign_id, "Campaign id")
        channel = validation.choice(content.channel, "Channel", Channel)
        self._marketing = channel is Channel.MARKETING
        sender_email = validation.email_address(content.from_email, "From email")
        sender_name = _optional_line(content.from_name, "From name", 200)
        subject = validation.header_value(content.subject, "Subject", MAX_SUBJECT)
        self._hosts = _hosts(channel, sender_email.rpartition("@")[2], server, domain)
        self._from = _from_headers(sender_email, sender_name, server)
        self._subject = _stock_header("Subject", subject, "Subject")
        x_mailer = _optional_line(sender.x_mailer, "X-Mailer Header", 200) or DEFAULT_X_MAILER
        self._tail = (_MIME_VERSION, _stock_header("X-Mailer", x_mailer, "X-Mailer Header"))

        text = _body_text(content.text, "Text body")
        html = _body_text(content.html, "HTML body")
        if text is None and html is None:
            raise ValidationError(
                "Message body", "is empty; give the campaign a text or HTML body."
            )
        self._text: _Part | None = None
        if text is not None:
            wrapped = _wrap_text(
                _body_text(sender.text_header, "Plain Text Email Header", 65_536),
                text,
                _body_text(sender.text_footer, "Plain Text Email Footer", 65_536),
            )
            self._text = _Part(_TEXT_TYPE, _QP, _quoted_printable(wrapped))
        self._html: _Html | None = None
        self._html_payload: str | None = None
        if html is not None:
            wrapped_html, pixel_at = _wrap_html(
                _body_text(sender.html_header, "HTML Email Header", 262_144),
                html,
                _body_text(sender.html_footer, "HTML Email Footer", 262_144),
            )
            self._html = _html_template(
                wrapped_html,
                pixel_at if self._hosts.opens else None,
                track_links=self._hosts.links is not None,
            )
            if not self._html.slots:
                self._html_payload = _quoted_printable(self._html.literals[0])
        self._click_base = f"https://{self._hosts.links}/c/" if self._hosts.links else ""
        self._pixel_base = f"https://{self._hosts.opens}/o/" if self._hosts.opens else ""
        self._boundary_prefix = f"=_postroom_{self._campaign_id}_"

    def build(
        self, item_id: int, recipient: str, message_id: str, *, now: datetime | None = None
    ) -> BuiltMessage:
        """The message for one item; the same inputs give the same message, bar the Date."""
        item = _identifier(item_id, "Item id")
        to = recipient_address(recipient)
        headers = [
            *self._from,
            PreparedHeader("To", to, f"To: {to}{_CRLF}"),
            self._subject,
            _date_header(now),
            _plain_header("Message-ID", message_id_header(message_id)),
            *self._tail,
        ]
        if self._marketing:
            headers += self._unsubscribe_headers(item)
        html = self._html_part(item)
        body: _Part | tuple[PreparedHeader, str, tuple[_Part, ...]]
        if self._text is not None and html is not None:
            boundary = f"{self._boundary_prefix}{item}"
            content_type = _plain_header(
                "Content-Type", f'multipart/alternative; boundary="{boundary}"'
            )
            body = (content_type, boundary, (self._text, html))
        elif html is not None:
            body = html
        else:
            assert self._text is not None  # the constructor refuses a campaign without bodies
            body = self._text
        envelope = verp_address(self._key, item, to, self._hosts.envelope)
        return BuiltMessage(headers, body, envelope, (to,))

    def _unsubscribe_headers(self, item: int) -> list[PreparedHeader]:
        mailto = unsubscribe_address(self._key, self._campaign_id, item, self._hosts.envelope)
        uris = [f"<mailto:{mailto}?subject=unsubscribe>"]
        if self._hosts.links:
            token = make_token(self._key, TokenKind.UNSUBSCRIBE, self._campaign_id, item)
            uris.append(f"<https://{self._hosts.links}/u/{token}>")
        value = ", ".join(uris)
        wire = f"List-Unsubscribe: {value}"
        if len(wire) > 78:  # one URI a line: a folded header must break at whitespace
            wire = f"List-Unsubscribe: {f',{_CRLF} '.join(uris)}"
        headers = [PreparedHeader("List-Unsubscribe", value, wire + _CRLF)]
        if self._hosts.links:
            headers.append(_ONE_CLICK_HEADER)
        return headers

    def _html_part(self, item: int) -> _Part | None:
        if self._html is None:
            return None
        if self._html_payload is not None:
            return _Part(_HTML_TYPE, _QP, self._html_payload)
        literals, key, campaign = self._html.literals, self._key, self._campaign_id
        click = payload_prefix(TokenKind.CLICK, campaign, item)
        out = [literals[0]]
        for slot, literal in zip(self._html.slots, literals[1:], strict=True):
            if slot is None:
                token = make_token(key, TokenKind.OPEN, campaign, item)
                out.append(
                    f'<img src="{self._pixel_base}{token}" width="1" height="1" alt="" '
                    'style="display:block;width:1px;height:1px;border:0" />'
                )
            else:  # slot is "|<url>", so this is token_payload(CLICK, ...) made faster
                out.append(self._click_base + sign_payload(key, click + slot))
            out.append(literal)
        return _Part(_HTML_TYPE, _QP, _quoted_printable("".join(out)))


def _from_headers(
    sender_email: str, sender_name: str | None, server: ServerPolicy
) -> tuple[PreparedHeader, ...]:
    """From, and Reply-To when the server enforces another From (see the module notes)."""
    enforced = validation.optional_email(server.enforced_from_email, "Enforced From Email")
    if enforced is None or enforced.lower() == sender_email.lower():
        return (_stock_header("From", _address(sender_name, sender_email, "From"), "From"),)
    shown_name = sender_name if server.sender_info_as_from else None
    return (
        _stock_header("From", _address(shown_name, enforced, "From"), "From"),
        _stock_header("Reply-To", _address(sender_name, sender_email, "Reply-To"), "Reply-To"),
    )


def _optional_line(value: object, field: str, max_length: int) -> str | None:
    if value is None:
        return None
    return validation.header_value(value, field, max_length) or None


def _plain_header(name: str, value: str) -> PreparedHeader:
    """A header whose value is ASCII and needs no encoding (folding is the caller's)."""
    return PreparedHeader(name, value, f"{name}: {value}{_CRLF}")


_date_cache: tuple[int, PreparedHeader] = (-1, _plain_header("Date", ""))


def _date_header(now: datetime | None) -> PreparedHeader:
    global _date_cache
    if now is not None:
        return _plain_header("Date", format_datetime(now.astimezone(UTC)))
    second = int(time.time())
    cached_second, header = _date_cache
    if cached_second != second:  # thousands of messages a second share one Date
        header = _plain_header("Date", format_datetime(datetime.fromtimestamp(second, UTC)))
        _date_cache = (second, header)
    return header


def prepare_campaign(
    content: CampaignContent,
    sender: SenderPolicy,
    server: ServerPolicy,
    domain: SenderDomainInfo | None,
    key: TrackingKey,
) -> PreparedCampaign:
    """Check and render what a campaign's messages share; ValidationError says what is wrong."""
    return PreparedCampaign(content, sender, server, domain, key)


_prepared = lru_cache(maxsize=PREPARED_CAMPAIGNS)(prepare_campaign)


def build_message(
    spec: MessageSpec,
    sender: SenderPolicy,
    server: ServerPolicy,
    domain: SenderDomainInfo | None,
    key: TrackingKey,
    *,
    now: datetime | None = None,
) -> BuiltMessage:
    """The message for one item, its VERP envelope sender and its recipients.

    ``domain`` is the sender domain of the campaign's From address, or None when it is
    not one. Campaign-wide work is cached, so calling this per item costs one build.
    """
    prepared = _prepared(spec.content, sender, server, domain, key)
    return prepared.build(spec.item_id, spec.recipient, spec.message_id, now=now)


# ---------------------------------------------------------------- from the models


def sender_policy_for(group: UserGroup) -> SenderPolicy:
    return SenderPolicy(
        x_mailer=group.x_mailer,
        text_header=group.plain_text_header,
        text_footer=group.plain_text_footer,
        html_header=group.html_header,
        html_footer=group.html_footer,
    )


def server_policy_for(server: DeliveryServer) -> ServerPolicy:
    return ServerPolicy(
        enforced_from_email=server.enforced_from_email,
        sender_info_as_from=bool(server.sender_info_as_from),
        sender_info_as_mfrom=bool(server.sender_info_as_mfrom),
        link_tracking_domain=server.link_tracking_domain,
        open_tracking_domain=server.open_tracking_domain,
        mail_from_domain=server.mail_from_domain,
    )


def campaign_content_for(campaign: Campaign) -> CampaignContent:
    return CampaignContent(
        campaign_id=campaign.id,
        channel=campaign.channel,
        from_email=campaign.from_email,
        from_name=campaign.from_name,
        subject=campaign.subject,
        text=campaign.body_text,
        html=campaign.body_html,
    )


def message_spec_for(content: CampaignContent, item: QueueItem) -> MessageSpec:
    return MessageSpec(content, item.id, item.recipient, item.message_id)


def sender_domain_info_for(
    sender_domain: SenderDomain, settings: EffectiveDnsSettings | None = None
) -> SenderDomainInfo:
    """The domain's MFROM and tracking hosts, read from its rendered records.

    Load ``sender_domain.records`` with the row (``selectinload``) to keep this free of
    queries. ``settings`` (the DNS settings in force) sharpen the search when the domain
    was rendered with today's subdomain and tracking prefix; see ``cname_roles``.
    """
    records = [(r.host, r.type) for r in sender_domain.records]
    mfrom, tracking = cname_roles(sender_domain.domain, records, settings)
    enabled = (
        sender_domain.status is DomainStatus.ENABLED and sender_domain.kind is TemplateKind.CAMPAIGN
    )
    return SenderDomainInfo(sender_domain.domain, enabled, mfrom, tracking)


def cname_roles(
    domain: str,
    records: Iterable[tuple[str, str]],
    settings: EffectiveDnsSettings | None = None,
) -> tuple[str | None, str | None]:
    """``(mfrom_host, tracking_host)`` among a domain's ``(host, type)`` records.

    Records are a snapshot with no role attached, so roles are read from their shape, the
    one the reference's template gives them: the MFROM CNAME is ``<subdomain>.<domain>``
    and the tracking CNAME ``<track prefix><merge><subdomain>.<domain>``; both are plain
    host names, unlike the ``_dmarc`` and ``_domainkey`` ones. With ``settings`` the exact
    names rendered with today's values win; otherwise, or when the values changed since,
    the first plain CNAME whose first label starts with the track prefix is the tracking
    host and the first other plain CNAME the MFROM host.
    """
    apex = domain.lower().rstrip(".")
    cnames = [host.lower().rstrip(".") for host, rtype in records if rtype.upper() == "CNAME"]
    plain = [
        host
        for host in cnames
        if (host == apex or host.endswith("." + apex))
        and not any(label.startswith("_") for label in host.split("."))
    ]
    prefix = settings.campaign_track_prefix.lower() if settings else "track"
    mfrom: str | None = None
    tracking: str | None = None
    if settings is not None:
        sub = settings.campaign_subdomain.lower()
        expected_mfrom = f"{sub}.{apex}" if sub else apex
        first = settings.campaign_track_merge.join(p for p in (prefix, sub) if p)
        expected_tracking = f"{first}.{apex}" if first else None
        mfrom = expected_mfrom if expected_mfrom in plain else None
        tracking = expected_tracking if expected_tracking in plain else None
    if tracking is None and prefix:
        tracking = next(
            (h for h in plain if h != mfrom and h.split(".")[0].startswith(prefix)), None
        )
    if mfrom is None:
        mfrom = next((h for h in plain if h != tracking), None)
    return mfrom, tracking
