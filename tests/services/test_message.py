"""The send engine's message builder: headers, bodies, tracking tokens and the VERP envelope."""

from __future__ import annotations

import copy
import email
import email.policy
import pickle
import re
from dataclasses import replace
from datetime import UTC, datetime
from email.message import EmailMessage

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from app.engine.message import (
    DEFAULT_X_MAILER,
    BuiltMessage,
    CampaignContent,
    MessageSpec,
    SenderDomainInfo,
    SenderPolicy,
    ServerPolicy,
    build_message,
    campaign_content_for,
    cname_roles,
    message_spec_for,
    prepare_campaign,
    sender_domain_info_for,
    sender_policy_for,
    server_policy_for,
)
from app.engine.tracking import (
    TokenKind,
    TrackingKey,
    make_token,
    parse_unsubscribe_address,
    parse_verp,
    verify_token,
    verp_address,
)
from app.models import (
    Campaign,
    Channel,
    DeliveryServer,
    DomainStatus,
    QueueItem,
    User,
    UserGroup,
)
from app.models.database import Database
from app.services.dns_settings import get_settings
from app.services.dns_templates import installation_hash_secret
from app.services.errors import ValidationError
from app.services.sender_domains import create_sender_domain, set_domain_status

KEY = TrackingKey(b"0123456789abcdef0123456789abcdef")
OTHER_KEY = TrackingKey(b"fedcba9876543210fedcba9876543210")
NOW = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)
TEXT = "Hello Bob,\nthe news.\n"
HTML = (
    '<html><head><title>t</title></head><body class="x"><p>Hi '
    '<a href="https://example.com/a?x=1&amp;y=2">one</a> '
    "<a href='http://example.org/b'>two</a> "
    '<a href="mailto:help@example.com">mail</a> <a href="#top">top</a> '
    '<a href="/relative">rel</a> <a href=HTTPS://example.net/c>three</a></p></body></html>'
)
CONTENT = CampaignContent(
    campaign_id=7,
    channel=Channel.MARKETING,
    from_email="news@mail.example.com",
    from_name="Example News",
    subject="This week",
    text=TEXT,
    html=HTML,
)
SENDER = SenderPolicy(x_mailer="Example Mailer 2")
SERVER = ServerPolicy(
    link_tracking_domain="click.example.net",
    open_tracking_domain="open.example.net",
    mail_from_domain="bounces.example.net",
)
SPEC = MessageSpec(CONTENT, 1001, "bob@example.org", "<7.1001@mail.example.com>")


def build(
    spec: MessageSpec = SPEC,
    sender: SenderPolicy = SENDER,
    server: ServerPolicy = SERVER,
    domain: SenderDomainInfo | None = None,
) -> BuiltMessage:
    return build_message(spec, sender, server, domain, KEY, now=NOW)


def with_content(**changes: object) -> MessageSpec:
    return replace(SPEC, content=replace(CONTENT, **changes))  # type: ignore[arg-type]


def parsed(built: BuiltMessage) -> EmailMessage:
    message = email.message_from_bytes(built.as_bytes(), policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def body(message: EmailMessage, subtype: str) -> str:
    part = message.get_body((subtype,))
    assert part is not None, f"no text/{subtype} part"
    content = part.get_content()
    assert isinstance(content, str)
    return content.replace("\r\n", "\n")


def tokens(html: str, path: str) -> list[str]:
    return re.findall(rf"https://[a-z0-9.-]+/{path}/([A-Za-z0-9_.-]+)", html)


# ---------------------------------------------------------------- headers


def test_every_header_is_there_and_reads_back_the_same() -> None:
    built = build()
    message = parsed(built)
    assert message["From"] == "Example News <news@mail.example.com>"
    assert message["To"] == "bob@example.org"
    assert message["Subject"] == "This week"
    assert message["Date"] == "Tue, 01 Dec 2026 12:00:00 +0000"
    assert message["Message-ID"] == "<7.1001@mail.example.com>"
    assert message["MIME-Version"] == "1.0"
    assert message["X-Mailer"] == "Example Mailer 2"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message.get_content_type() == "multipart/alternative"
    assert message["Reply-To"] is None
    unsubscribe = message["List-Unsubscribe"]
    assert re.fullmatch(
        r"<mailto:unsub-7-1001-[0-9a-f]{10}@bounces\.example\.net\?subject=unsubscribe>, "
        r"<https://click\.example\.net/u/[A-Za-z0-9_.-]+>",
        unsubscribe,
    ), unsubscribe
    # What the builder says it wrote is what a parser reads from the bytes.
    assert [(name, str(value)) for name, value in message.items()] == built.headers
    assert built.recipients == ("bob@example.org",)


def test_without_a_group_x_mailer_the_system_default_is_used() -> None:
    assert parsed(build(sender=SenderPolicy()))["X-Mailer"] == DEFAULT_X_MAILER


def test_message_id_is_the_items_own_on_every_build() -> None:
    first, second = build(), build()
    assert first.as_bytes() == second.as_bytes()  # same item, same message (Date pinned)
    assert parsed(first)["Message-ID"] == "<7.1001@mail.example.com>"
    bare = build(replace(SPEC, message_id="7.1001@mail.example.com"))
    assert parsed(bare)["Message-ID"] == "<7.1001@mail.example.com>"
    other = build(replace(SPEC, item_id=1002, message_id="<7.1002@mail.example.com>"))
    assert parsed(other)["Message-ID"] == "<7.1002@mail.example.com>"


def test_date_is_now_when_not_given() -> None:
    built = build_message(SPEC, SENDER, SERVER, None, KEY)
    sent = parsed(built)["Date"].datetime
    assert abs((datetime.now(UTC) - sent).total_seconds()) < 5


@pytest.mark.parametrize(
    ("server", "from_header", "reply_to"),
    [
        (ServerPolicy(), "Example News <news@mail.example.com>", None),
        (
            ServerPolicy(enforced_from_email="relay@relay.example"),
            "relay@relay.example",
            "Example News <news@mail.example.com>",
        ),
        (
            ServerPolicy(enforced_from_email="relay@relay.example", sender_info_as_from=True),
            "Example News <relay@relay.example>",
            "Example News <news@mail.example.com>",
        ),
        # Enforcing the sender's own address changes nothing.
        (
            ServerPolicy(enforced_from_email="NEWS@mail.example.com"),
            "Example News <news@mail.example.com>",
            None,
        ),
    ],
)
def test_enforced_from_wins_and_the_sender_gets_the_replies(
    server: ServerPolicy, from_header: str, reply_to: str | None
) -> None:
    message = parsed(build(server=server))
    assert message["From"] == from_header
    assert message["Reply-To"] == reply_to


def test_non_ascii_names_and_subjects_are_encoded_and_read_back() -> None:
    spec = with_content(from_name="Zoë Müller, Ltd.", subject="Grüße aus Köln — 10 % off 🎉")
    built = build(spec)
    raw = built.as_bytes()
    assert raw.isascii()
    header_block = raw.split(b"\r\n\r\n", 1)[0]
    assert all(len(line) <= 78 for line in header_block.split(b"\r\n") if b"List-" not in line)
    message = parsed(built)
    assert message["From"].addresses[0].display_name == "Zoë Müller, Ltd."
    assert message["Subject"] == "Grüße aus Köln — 10 % off 🎉"


# ---------------------------------------------------------------- bodies


def test_group_header_and_footer_surround_the_text_body() -> None:
    sender = SenderPolicy(text_header="== Example Group ==", text_footer="-- \nUnsubscribe below")
    text = body(parsed(build(sender=sender)), "plain")
    assert text == "== Example Group ==\nHello Bob,\nthe news.\n-- \nUnsubscribe below\n"


def test_group_header_and_footer_go_inside_the_html_body_and_the_pixel_last() -> None:
    sender = SenderPolicy(html_header="<div id=h>H</div>", html_footer="<div id=f>F</div>")
    html = body(parsed(build(sender=sender)), "html")
    assert html.startswith('<html><head><title>t</title></head><body class="x"><div id=h>H</div>')
    footer_at = html.index("<div id=f>F</div>")
    pixel_at = html.index('<img src="https://open.example.net/o/')
    assert html.index("three</a></p>") < footer_at < pixel_at < html.index("</body></html>")


def test_html_without_body_tags_gets_header_first_and_footer_then_pixel_last() -> None:
    sender = SenderPolicy(html_header="<p>H</p>", html_footer="<p>F</p>")
    html = body(parsed(build(with_content(html="<p>only a fragment</p>"), sender=sender)), "html")
    assert html.startswith("<p>H</p><p>only a fragment</p><p>F</p><img src=")
    assert html.endswith("/>")


def test_text_only_and_html_only_are_single_parts() -> None:
    text_only = parsed(build(with_content(html=None)))
    assert text_only.get_content_type() == "text/plain"
    assert body(text_only, "plain") == TEXT
    html_only = parsed(build(with_content(text="")))
    assert html_only.get_content_type() == "text/html"
    assert "https://click.example.net/c/" in body(html_only, "html")


def test_a_campaign_without_any_body_is_refused() -> None:
    with pytest.raises(ValidationError, match="Message body"):
        build(with_content(text=None, html=""))


def test_crlf_in_bodies_become_one_line_break() -> None:
    text = body(parsed(build(with_content(text="a\r\nb\rc\n", html=None))), "plain")
    assert text == "a\nb\nc\n"


# ---------------------------------------------------------------- tracking


def test_only_http_and_https_links_are_rewritten_to_signed_tokens() -> None:
    html = body(parsed(build()), "html")
    assert 'href="mailto:help@example.com"' in html
    assert 'href="#top"' in html and 'href="/relative"' in html
    assert "example.com/a" not in html and "example.org/b" not in html
    clicks = tokens(html, "c")
    assert [verify_token(KEY, t).url for t in clicks] == [
        "https://example.com/a?x=1&y=2",  # the address the browser would have used
        "http://example.org/b",
        "HTTPS://example.net/c",
    ]
    for token in clicks:
        payload = verify_token(KEY, token)
        assert (payload.kind, payload.campaign_id, payload.item_id) == (TokenKind.CLICK, 7, 1001)


def test_the_open_pixel_and_the_unsubscribe_link_carry_the_item() -> None:
    message = parsed(build())
    (opened,) = tokens(body(message, "html"), "o")
    assert verify_token(KEY, opened) == verify_token(KEY, make_token(KEY, TokenKind.OPEN, 7, 1001))
    (unsubscribe,) = tokens(message["List-Unsubscribe"], "u")
    payload = verify_token(KEY, unsubscribe)
    assert (payload.kind, payload.campaign_id, payload.item_id) == (TokenKind.UNSUBSCRIBE, 7, 1001)
    mailto = re.search(r"mailto:([^?>]+)", message["List-Unsubscribe"])
    assert mailto is not None
    assert parse_unsubscribe_address(KEY, mailto.group(1)) == (7, 1001)
    assert parse_unsubscribe_address(KEY, mailto.group(1).upper()) == (7, 1001)
    with pytest.raises(ValidationError):
        parse_unsubscribe_address(OTHER_KEY, mailto.group(1))
    with pytest.raises(ValidationError):
        parse_unsubscribe_address(KEY, mailto.group(1).replace("-1001-", "-1002-"))


@given(data=st.data())
@settings(max_examples=150, deadline=None)
def test_a_tampered_token_is_refused(data: st.DataObject) -> None:
    token = make_token(KEY, TokenKind.CLICK, 7, 1001, "https://example.com/a")
    position = data.draw(st.integers(0, len(token) - 1))
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/"
    char = data.draw(st.sampled_from(alphabet))
    tampered = token[:position] + char + token[position + 1 :]
    assume(tampered != token)
    with pytest.raises(ValidationError, match="Tracking token"):
        verify_token(KEY, tampered)


@pytest.mark.parametrize(
    "token",
    ["", ".", "abc", "a.b.c", "x" * 20_000, "Y3w3fDE.AAAAAAAAAAAAAAAAAAAAAA"],
)
def test_foreign_tokens_are_refused_with_one_sentence(token: str) -> None:
    with pytest.raises(ValidationError) as caught:
        verify_token(KEY, token)
    assert "\n" not in str(caught.value) and str(caught.value).endswith(".")


def test_a_token_from_another_key_is_refused() -> None:
    with pytest.raises(ValidationError):
        verify_token(OTHER_KEY, make_token(KEY, TokenKind.OPEN, 7, 1001))


@pytest.mark.parametrize("channel", [Channel.TRANSACTIONAL, Channel.AUTORESPONDER])
def test_only_marketing_mail_is_tracked_and_gets_list_unsubscribe(channel: Channel) -> None:
    message = parsed(build(with_content(channel=channel)))
    assert message["List-Unsubscribe"] is None
    assert message["List-Unsubscribe-Post"] is None
    html = body(message, "html")
    assert "click.example.net" not in html and "open.example.net" not in html
    assert 'href="https://example.com/a?x=1&amp;y=2"' in html


def test_without_tracking_domains_links_stay_and_unsubscribe_is_mailto_only() -> None:
    message = parsed(build(server=ServerPolicy(mail_from_domain="bounces.example.net")))
    html = body(message, "html")
    assert 'href="https://example.com/a?x=1&amp;y=2"' in html and "<img" not in html
    assert message["List-Unsubscribe"].startswith("<mailto:unsub-7-1001-")
    assert "https:" not in message["List-Unsubscribe"]
    assert message["List-Unsubscribe-Post"] is None  # RFC 8058 needs an HTTPS URI


def test_an_enabled_sender_domains_tracking_host_serves_clicks_and_opens() -> None:
    domain = SenderDomainInfo(
        "mail.example.com", True, "sl.mail.example.com", "track-sl.mail.example.com"
    )
    html = body(parsed(build(domain=domain)), "html")
    assert tokens(html, "c") and tokens(html, "o")
    assert "click.example.net" not in html and "open.example.net" not in html
    assert html.count("https://track-sl.mail.example.com/") == 4


def test_tracking_key_is_never_shown_and_must_be_long_enough() -> None:
    assert "0123456789abcdef" not in repr(KEY)
    with pytest.raises(ValidationError, match="Tracking key"):
        TrackingKey(b"short")
    derived = TrackingKey.from_installation_secret("installation secret")
    assert derived == TrackingKey.from_installation_secret("installation secret")
    assert derived.secret != b"installation secret"
    assert derived != TrackingKey.from_installation_secret("another secret")


# ---------------------------------------------------------------- envelope


def test_envelope_is_verp_at_the_servers_mail_from_domain() -> None:
    built = build()
    assert re.fullmatch(
        r"bounce-1001-[0-9a-f]{10}-bob=example\.org@bounces\.example\.net", built.envelope_from
    )
    assert parse_verp(KEY, built.envelope_from).recipient == "bob@example.org"


@pytest.mark.parametrize(
    ("server", "domain", "host"),
    [
        # An enabled sender domain's MFROM host wins.
        (
            SERVER,
            SenderDomainInfo("mail.example.com", True, "sl.mail.example.com"),
            "sl.mail.example.com",
        ),
        # Disabled, without an MFROM record, or about another domain: the server's domain.
        (
            SERVER,
            SenderDomainInfo("mail.example.com", False, "sl.mail.example.com"),
            "bounces.example.net",
        ),
        (SERVER, SenderDomainInfo("mail.example.com", True, None), "bounces.example.net"),
        (
            SERVER,
            SenderDomainInfo("other.example.com", True, "sl.other.example.com"),
            "bounces.example.net",
        ),
        # Use Sender Info as MFROM: the sender's own domain rather than the server's.
        (replace(SERVER, sender_info_as_mfrom=True), None, "mail.example.com"),
        # No Mail From domain at all: the From domain.
        (ServerPolicy(), None, "mail.example.com"),
    ],
)
def test_envelope_host(server: ServerPolicy, domain: SenderDomainInfo | None, host: str) -> None:
    assert build(server=server, domain=domain).envelope_from.endswith("@" + host)


def _one_line(max_size: int) -> st.SearchStrategy[str]:
    characters = st.characters(blacklist_categories=("Cc", "Cs", "Cf", "Zl", "Zp"))
    return st.text(characters, min_size=1, max_size=max_size).map(lambda t: " ".join(t.split()))


# Names stay short enough for one encoded word: when the standard library's parser reads a
# display name folded into two encoded words it keeps the space between them, which RFC
# 2047 6.2 says to drop (the bytes are right; that reader is not).
@given(name=_one_line(10), subject=_one_line(80))
@settings(max_examples=150, deadline=None)
def test_any_one_line_name_and_subject_read_back_unchanged(name: str, subject: str) -> None:
    assume(name and subject)
    built = build(with_content(from_name=name, subject=subject))
    assert built.as_bytes().isascii()
    message = parsed(built)
    assert message["From"].addresses[0].display_name == name
    assert message["From"].addresses[0].addr_spec == "news@mail.example.com"
    assert message["Subject"] == subject


def test_international_recipient_is_idna_in_to_and_in_the_envelope() -> None:
    built = build(replace(SPEC, recipient="jane@Bücher.Example"))
    assert built.recipients == ("jane@xn--bcher-kva.example",)
    assert parsed(built)["To"] == "jane@xn--bcher-kva.example"
    assert parse_verp(KEY, built.envelope_from).recipient == "jane@xn--bcher-kva.example"


_ATEXT = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+/=?^_`{|}~-"
local_parts = st.lists(st.text(_ATEXT, min_size=1, max_size=20), min_size=1, max_size=4).map(
    ".".join
)
domains = st.lists(
    st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True), min_size=2, max_size=3
).map(".".join)


@given(item=st.integers(0, 2**62), local=local_parts, domain=domains)
@settings(max_examples=300, deadline=None)
def test_verp_round_trips(item: int, local: str, domain: str) -> None:
    recipient = f"{local}@{domain}"
    address = verp_address(KEY, item, recipient, "bounces.example.net")
    local_part = address.rpartition("@")[0]
    assert len(local_part) <= 64
    decoded = parse_verp(KEY, address)
    assert decoded.item_id == item
    full = f"bounce-{item}-0123456789-{local}={domain}"
    # The recipient is named whenever it fits in a local part; else the item alone names it.
    assert decoded.recipient == (recipient if len(full) <= 64 else None)
    assert parse_verp(KEY, address.lower()).item_id == item  # relays that lower-case
    with pytest.raises(ValidationError, match="Bounce address"):
        parse_verp(OTHER_KEY, address)


def test_a_forged_bounce_address_is_refused() -> None:
    address = verp_address(KEY, 1001, "bob@example.org", "bounces.example.net")
    for forged in (
        address.replace("bob=", "eve="),
        address.replace("bounce-1001-", "bounce-1002-"),
        "bounce-1001@bounces.example.net",
        "postmaster@bounces.example.net",
    ):
        with pytest.raises(ValidationError, match="Bounce address"):
            parse_verp(KEY, forged)


# ---------------------------------------------------------------- refused input

_BREAKS = st.sampled_from(["\r", "\n", "\r\n", "\x00", "\u2028"])


@given(
    field=st.sampled_from(
        ["from_name", "subject", "from_email", "recipient", "message_id", "x_mailer", "enforced"]
    ),
    before=st.text(_ATEXT, max_size=5),
    breaker=_BREAKS,
    after=st.text(_ATEXT, max_size=5),
)
@settings(max_examples=200, deadline=None)
def test_line_breaks_in_any_header_input_are_refused(
    field: str, before: str, breaker: str, after: str
) -> None:
    spec, sender, server = SPEC, SENDER, SERVER
    injected = f"{before}{breaker}Bcc: eve@example.net{after}"
    if field == "recipient":
        spec = replace(SPEC, recipient=f"bob{injected}@example.org")
    elif field == "message_id":
        spec = replace(SPEC, message_id=f"<7.1001{injected}@example.com>")
    elif field == "x_mailer":
        sender = SenderPolicy(x_mailer=injected)
    elif field == "enforced":
        server = replace(SERVER, enforced_from_email=f"relay{injected}@relay.example")
    elif field == "from_email":
        spec = with_content(from_email=f"news{injected}@mail.example.com")
    else:
        spec = with_content(**{field: injected})
    with pytest.raises(ValidationError) as caught:
        build(spec, sender, server)
    message = str(caught.value)
    assert f"U+{ord(breaker[0]):04X}" in message  # refused for the break, not for the rest
    assert "\n" not in message and "\r" not in message and message.endswith(".")


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        (replace(SPEC, recipient="not an address"), "Recipient"),
        (replace(SPEC, recipient="bob@"), "Recipient"),
        (replace(SPEC, message_id="no-at-sign"), "Message-ID"),
        (replace(SPEC, message_id="<a b@c>"), "Message-ID"),
        (replace(SPEC, item_id=-1), "Item id"),
        (with_content(from_email="nobody"), "From email"),
    ],
)
def test_bad_item_input_is_one_sentence_naming_the_field(spec: MessageSpec, field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        build(spec)
    assert caught.value.field == field
    assert "\n" not in str(caught.value)


# ---------------------------------------------------------------- bytes


@pytest.mark.parametrize("channel", list(Channel))
@pytest.mark.parametrize(("text", "html"), [(TEXT, HTML), (TEXT, None), (None, HTML)])
def test_fast_bytes_are_what_the_email_package_writes(
    channel: Channel, text: str | None, html: str | None
) -> None:
    sender = SenderPolicy(text_header="T", html_footer="<p>F</p>")
    built = build(with_content(channel=channel, text=text, html=html), sender=sender)
    data = built.as_bytes()
    assert data == built.message.as_bytes()
    # aiosmtplib flattens an EmailMessage with the default policy and CRLF.
    smtp_policy = email.policy.default.clone(linesep="\r\n")
    assert data == built.message.as_bytes(policy=smtp_policy)
    reparsed = parsed(built)
    assert (body(reparsed, "plain") if text else None) == ("T\n" + text if text else None)
    if html:
        assert "<p>F</p>" in body(reparsed, "html")


def test_the_email_message_view_reads_like_any_other() -> None:
    message = build().message
    assert message["Subject"] == "This week"
    assert message.get_content_type() == "multipart/alternative"
    assert [part.get_content_type() for part in message.iter_parts()] == [
        "text/plain",
        "text/html",
    ]


def test_the_message_survives_copy_and_pickle() -> None:
    built = build()
    for clone in (copy.deepcopy(built.message), pickle.loads(pickle.dumps(built.message))):
        assert clone.as_bytes() == built.as_bytes()


def test_control_characters_in_bodies_are_carried_not_refused() -> None:
    text = body(parsed(build(with_content(text="page 1\x0cpage 2\x00end\n", html=None))), "plain")
    assert text == "page 1\x0cpage 2\x00end\n"


def test_prepared_campaign_builds_each_item() -> None:
    prepared = prepare_campaign(CONTENT, SENDER, SERVER, None, KEY)
    first = prepared.build(1, "a@example.org", "<7.1@x.example>", now=NOW)
    second = prepared.build(2, "b@example.org", "<7.2@x.example>", now=NOW)
    assert parse_verp(KEY, first.envelope_from).item_id == 1
    assert parse_verp(KEY, second.envelope_from).item_id == 2
    assert {verify_token(KEY, t).item_id for t in tokens(body(parsed(second), "html"), "c")} == {2}


# ---------------------------------------------------------------- record roles


def test_cname_roles_find_the_mfrom_and_tracking_hosts() -> None:
    records = [
        ("sl.mail.example.com", "CNAME"),
        ("key1._domainkey.sl.mail.example.com", "CNAME"),
        ("_dmarc.sl.mail.example.com", "CNAME"),
        ("track-sl.mail.example.com", "CNAME"),
        ("abcdefghij.sl.mail.example.com", "TXT"),
    ]
    expected = ("sl.mail.example.com", "track-sl.mail.example.com")
    assert cname_roles("mail.example.com", records) == expected
    assert cname_roles("mail.example.com", list(reversed(records))) == expected
    assert cname_roles("mail.example.com", [("mail.example.com", "CNAME")]) == (
        "mail.example.com",
        None,
    )
    assert cname_roles("mail.example.com", [("x.other.example", "CNAME")]) == (None, None)


# ---------------------------------------------------------------- from the models


def test_policies_from_the_models_build_the_message(sqlite_database: Database) -> None:
    with sqlite_database.transaction() as session:
        server = DeliveryServer(
            name="Relay",
            host="smtp.example.net",
            link_tracking_domain="click.example.net",
            open_tracking_domain="open.example.net",
            mail_from_domain="bounces.example.net",
            enforced_from_email="relay@example.net",
            sender_info_as_from=True,
        )
        group = UserGroup(
            name="Senders",
            sender_domain_management=True,
            marketing_server=server,
            x_mailer="Group Mailer",
            plain_text_header="GROUP TEXT HEADER",
            plain_text_footer="GROUP TEXT FOOTER",
            html_header="<p>GH</p>",
            html_footer="<p>GF</p>",
        )
        session.add_all([server, group, User(username="alice", email="a@example.com", group=group)])
        session.flush()
        created = create_sender_domain(session, "alice", "mail.example.com")
        set_domain_status(session, "mail.example.com", "campaign", DomainStatus.ENABLED)
        settings_now = get_settings(session)
        info = sender_domain_info_for(created, settings_now)
        sender = sender_policy_for(group)
        server_policy = server_policy_for(server)
        key = TrackingKey.from_installation_secret(installation_hash_secret(session))
    assert info == SenderDomainInfo(
        "mail.example.com", True, "sl.mail.example.com", "track-sl.mail.example.com"
    )
    campaign = Campaign(
        id=7,
        channel=Channel.MARKETING,
        from_email="news@mail.example.com",
        from_name="News",
        subject="Hi",
        body_text="Hello",
        body_html="<body>Hello</body>",
    )
    item = QueueItem(
        id=5, campaign_id=7, recipient="bob@example.org", message_id="<7.5@example.net>"
    )
    spec = message_spec_for(campaign_content_for(campaign), item)
    built = build_message(spec, sender, server_policy, info, key)
    message = parsed(built)
    assert message["From"] == "News <relay@example.net>"
    assert message["Reply-To"] == "News <news@mail.example.com>"
    assert message["X-Mailer"] == "Group Mailer"
    assert body(message, "plain") == "GROUP TEXT HEADER\nHello\nGROUP TEXT FOOTER\n"
    assert body(message, "html").startswith("<body><p>GH</p>Hello<p>GF</p><img src=")
    assert built.envelope_from.endswith("@sl.mail.example.com")
    assert parse_verp(key, built.envelope_from).item_id == 5


def test_a_pending_sender_domain_is_not_used(sqlite_database: Database) -> None:
    with sqlite_database.transaction() as session:
        group = UserGroup(name="Senders", sender_domain_management=True)
        session.add_all([group, User(username="alice", email="a@example.com", group=group)])
        session.flush()
        created = create_sender_domain(session, "alice", "mail.example.com")
        info = sender_domain_info_for(created)
    assert created.status is not DomainStatus.ENABLED
    assert info.enabled is False and info.mfrom_host == "sl.mail.example.com"
    built = build(with_content(from_email="news@mail.example.com"), domain=info)
    assert built.envelope_from.endswith("@bounces.example.net")
