"""Rendering of notification contexts into channel messages from the template files."""

import html
import shutil
from pathlib import Path
from uuid import UUID

import jinja2
import pytest

from fernd.domain.effects import (
    AnnouncementPostedNotification,
    EmailContext,
    LabourBegunNotification,
    LabourCompletedNotification,
    LabourInviteNotification,
    MotherContext,
    NotificationContext,
    SubscriberContext,
    SubscriberNotification,
    SubscriberRequestedNotification,
    SubscriptionApprovedNotification,
)
from fernd.domain.enums import NotificationChannel
from fernd.domain.users import User
from fernd.notifications.render import (
    DEFAULT_TEMPLATE_DIR,
    ELLIPSIS,
    SMS_MAX_LENGTH,
    NotificationError,
    RenderedNotification,
    Renderer,
    recipient_first_name,
    requester_name,
    sender_first_name,
    sender_name,
)

EMAIL = NotificationChannel.EMAIL
SMS = NotificationChannel.SMS
WHATSAPP = NotificationChannel.WHATSAPP

LINK = "https://track.example.org"
LABOUR_ID = UUID("0190f5a2-7c3e-7a41-9b2d-5e8f1c2a3b4d")
SUBSCRIPTION_ID = UUID("0190f5a9-5b7e-7c13-a2f4-8d1e6c9b3a52")
MOTHER_ID = "user_2mother"
SUBSCRIBER_ID = "user_2grandma"
REQUESTER_ID = "user_2uncle"
INVITE_ADDRESS = "friend@example.net"
ANNOUNCEMENT = "Waters have broken, off to hospital"
NOTES = "Born at 04:12, both doing well"

MOTHER = User(
    user_id=MOTHER_ID,
    issuer="https://id.example.com",
    email="alex@example.org",
    phone_number="+447700900001",
    first_name="Alex",
    last_name="Morgan",
    name="Alex Morgan",
)
SUBSCRIBER = User(
    user_id=SUBSCRIBER_ID,
    issuer="https://id.example.com",
    email="pat@example.org",
    phone_number="+447700900123",
    first_name="Pat",
    last_name="Lee",
    name="Patricia Lee",
)
REQUESTER = User(
    user_id=REQUESTER_ID,
    issuer="https://id.example.com",
    email="sam@example.org",
    first_name="Sam",
    name="Sam Rivers",
)
USERS = {user.user_id: user for user in (MOTHER, SUBSCRIBER, REQUESTER)}

SUBSCRIBER_NOTIFICATIONS: dict[str, SubscriberNotification] = {
    "LabourBegunData": LabourBegunNotification(labour_id=LABOUR_ID),
    "LabourCompletedData": LabourCompletedNotification(labour_id=LABOUR_ID),
    "LabourCompletedWithNoteData": LabourCompletedNotification(
        labour_id=LABOUR_ID, notes=NOTES
    ),
    "LabourAnnouncementData": AnnouncementPostedNotification(
        labour_id=LABOUR_ID, message=ANNOUNCEMENT
    ),
    "SubscriberApprovedData": SubscriptionApprovedNotification(labour_id=LABOUR_ID),
}
ALL_CHANNEL_TEMPLATES = [
    "LabourBegunData",
    "LabourCompletedData",
    "LabourCompletedWithNoteData",
    "LabourAnnouncementData",
]

# The default email subject of each template for the sample users.
EXPECTED_SUBJECTS = {
    "LabourBegunData": "Alex Morgan has gone into labour",
    "LabourCompletedData": "Alex's baby has arrived",
    "LabourCompletedWithNoteData": "Alex's baby has arrived",
    "LabourAnnouncementData": "New update from Alex Morgan",
    "SubscriberApprovedData": "Alex Morgan approved your request",
    "SubscriberRequestedData": "Sam Rivers would like to follow your labour",
    "LabourInviteData": "Alex Morgan invites you to follow their labour",
}

# The default SMS text of each template for the sample users.
EXPECTED_SMS = {
    "LabourBegunData": (
        "Hi Pat, Alex has gone into labour. Follow along: https://track.example.org"
    ),
    "LabourCompletedData": "Hi Pat, Alex's baby has arrived! https://track.example.org",
    "LabourCompletedWithNoteData": (
        "Hi Pat, Alex's baby has arrived! They wrote: Born at 04:12, both doing well"
    ),
    "LabourAnnouncementData": (
        "Hi Pat, Alex shared an update: Waters have broken, off to hospital"
    ),
}

# The default WhatsApp text of each template for the sample users.
EXPECTED_WHATSAPP = {
    "LabourBegunData": (
        "Hi Pat, Alex Morgan has gone into labour. "
        "Follow along: https://track.example.org"
    ),
    "LabourCompletedData": (
        "Hi Pat, Alex Morgan's baby has arrived! https://track.example.org"
    ),
    "LabourCompletedWithNoteData": (
        "Hi Pat, Alex Morgan's baby has arrived! "
        "They wrote: Born at 04:12, both doing well"
    ),
    "LabourAnnouncementData": (
        "Hi Pat, Alex Morgan shared an update: Waters have broken, off to hospital"
    ),
}

# The value of WhatsApp variable "3" for each template.
EXPECTED_WHATSAPP_THIRD = {
    "LabourBegunData": LINK,
    "LabourCompletedData": LINK,
    "LabourCompletedWithNoteData": NOTES,
    "LabourAnnouncementData": ANNOUNCEMENT,
}

# The template data of each template for the sample users.
EXPECTED_TEMPLATE_DATA = {
    "LabourBegunData": {
        "type": "LabourBegunData",
        "birthing_person_name": "Alex Morgan",
        "birthing_person_first_name": "Alex",
        "subscriber_first_name": "Pat",
        "link": LINK,
    },
    "LabourCompletedData": {
        "type": "LabourCompletedData",
        "birthing_person_name": "Alex Morgan",
        "birthing_person_first_name": "Alex",
        "subscriber_first_name": "Pat",
        "link": LINK,
    },
    "LabourCompletedWithNoteData": {
        "type": "LabourCompletedWithNoteData",
        "birthing_person_name": "Alex Morgan",
        "birthing_person_first_name": "Alex",
        "subscriber_first_name": "Pat",
        "link": LINK,
        "update": NOTES,
    },
    "LabourAnnouncementData": {
        "type": "LabourAnnouncementData",
        "birthing_person_name": "Alex Morgan",
        "birthing_person_first_name": "Alex",
        "subscriber_first_name": "Pat",
        "link": LINK,
        "announcement": ANNOUNCEMENT,
    },
    "SubscriberApprovedData": {
        "type": "SubscriberApprovedData",
        "subscriber_first_name": "Pat",
        "birthing_person_name": "Alex Morgan",
        "link": LINK,
    },
    "SubscriberRequestedData": {
        "type": "SubscriberRequestedData",
        "birthing_person_first_name": "Alex",
        "subscriber_name": "Sam Rivers",
        "link": LINK,
    },
    "LabourInviteData": {
        "type": "LabourInviteData",
        "birthing_person_name": "Alex Morgan",
        "birthing_person_first_name": "Alex",
        "link": LINK,
    },
}
ALL_TEMPLATES = list(EXPECTED_TEMPLATE_DATA)


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer(LINK)


def subscriber_context(
    notification: SubscriberNotification,
    channel: NotificationChannel = EMAIL,
    recipient_id: str = SUBSCRIBER_ID,
    sender_id: str = MOTHER_ID,
) -> SubscriberContext:
    return SubscriberContext(
        recipient_user_id=recipient_id,
        subscription_id=SUBSCRIPTION_ID,
        channel=channel,
        sender_id=sender_id,
        notification=notification,
    )


def mother_context(
    channel: NotificationChannel = EMAIL, requester_id: str = REQUESTER_ID
) -> MotherContext:
    return MotherContext(
        recipient_user_id=MOTHER_ID,
        channel=channel,
        notification=SubscriberRequestedNotification(
            labour_id=LABOUR_ID,
            subscription_id=SUBSCRIPTION_ID,
            requester_user_id=requester_id,
        ),
    )


def invite_context(
    email: str = INVITE_ADDRESS, sender_id: str = MOTHER_ID
) -> EmailContext:
    return EmailContext(
        email=email,
        sender_id=sender_id,
        notification=LabourInviteNotification(labour_id=LABOUR_ID),
    )


def context_for(
    template: str, channel: NotificationChannel = EMAIL
) -> NotificationContext:
    """Return the sample context that renders `template`."""
    if template == "SubscriberRequestedData":
        return mother_context(channel)
    if template == "LabourInviteData":
        return invite_context()
    return subscriber_context(SUBSCRIBER_NOTIFICATIONS[template], channel)


def with_users(*users: User) -> dict[str, User]:
    """Return the sample users with `users` replacing those of the same id."""
    return {**USERS, **{user.user_id: user for user in users}}


def without_user(user_id: str) -> dict[str, User]:
    return {key: user for key, user in USERS.items() if key != user_id}


def render_error(
    renderer: Renderer, context: NotificationContext, users: dict[str, User]
) -> NotificationError:
    with pytest.raises(NotificationError) as caught:
        renderer.render(context, users)
    return caught.value


# Template × channel


@pytest.mark.parametrize("template", ALL_TEMPLATES)
def test_render_email_subject_uses_default_wording(
    renderer: Renderer, template: str
) -> None:
    rendered = renderer.render(context_for(template), USERS)
    assert rendered.template == template
    assert rendered.subject == EXPECTED_SUBJECTS[template]


@pytest.mark.parametrize("template", ALL_TEMPLATES)
def test_render_template_data_has_type_and_fields(
    renderer: Renderer, template: str
) -> None:
    rendered = renderer.render(context_for(template), USERS)
    assert rendered.template_data == EXPECTED_TEMPLATE_DATA[template]


@pytest.mark.parametrize("template", ALL_TEMPLATES)
def test_email_text_fields_and_link(renderer: Renderer, template: str) -> None:
    rendered = renderer.render(context_for(template), USERS)
    for field, value in EXPECTED_TEMPLATE_DATA[template].items():
        if field != "type":
            assert value in rendered.text, field
    assert rendered.text.endswith(LINK)


@pytest.mark.parametrize("template", ALL_TEMPLATES)
def test_render_email_text_repeats_subject(renderer: Renderer, template: str) -> None:
    rendered = renderer.render(context_for(template), USERS)
    assert rendered.subject is not None
    assert rendered.subject in rendered.text


@pytest.mark.parametrize("template", ALL_TEMPLATES)
def test_email_html_fields_and_link(renderer: Renderer, template: str) -> None:
    rendered = renderer.render(context_for(template), USERS)
    assert rendered.html is not None
    assert rendered.subject is not None
    for field, value in EXPECTED_TEMPLATE_DATA[template].items():
        if field != "type":
            assert html.escape(value) in rendered.html, field
    assert rendered.subject in html.unescape(rendered.html)
    assert f'href="{LINK}"' in rendered.html
    assert '<meta name="viewport"' in rendered.html


@pytest.mark.parametrize("template", ALL_TEMPLATES)
def test_render_email_html_ends_with_link(renderer: Renderer, template: str) -> None:
    rendered = renderer.render(context_for(template), USERS)
    assert rendered.html is not None
    after_link = rendered.html.rsplit(LINK, 1)[1]
    assert after_link.startswith("</a></p>")
    assert after_link.count("<p") == 0


@pytest.mark.parametrize("template", ALL_TEMPLATES)
def test_render_email_addresses_recipient(renderer: Renderer, template: str) -> None:
    rendered = renderer.render(context_for(template), USERS)
    assert rendered.channel is EMAIL
    assert rendered.whatsapp_variables is None
    if template == "SubscriberRequestedData":
        assert rendered.destination == MOTHER.email
        assert rendered.recipient_id == MOTHER_ID
    elif template == "LabourInviteData":
        assert rendered.destination == INVITE_ADDRESS
        assert rendered.recipient_id == INVITE_ADDRESS
    else:
        assert rendered.destination == SUBSCRIBER.email
        assert rendered.recipient_id == SUBSCRIBER_ID


@pytest.mark.parametrize("template", ALL_CHANNEL_TEMPLATES)
def test_render_sms_uses_default_wording(renderer: Renderer, template: str) -> None:
    rendered = renderer.render(context_for(template, SMS), USERS)
    assert rendered.channel is SMS
    assert rendered.text == EXPECTED_SMS[template]
    assert rendered.template_data == EXPECTED_TEMPLATE_DATA[template]


@pytest.mark.parametrize("template", ALL_CHANNEL_TEMPLATES)
def test_render_sms_addresses_phone_number(renderer: Renderer, template: str) -> None:
    rendered = renderer.render(context_for(template, SMS), USERS)
    assert rendered.destination == SUBSCRIBER.phone_number
    assert rendered.recipient_id == SUBSCRIBER_ID
    assert rendered.subject is None
    assert rendered.html is None
    assert rendered.whatsapp_variables is None


@pytest.mark.parametrize("template", ALL_CHANNEL_TEMPLATES)
def test_render_whatsapp_text_and_variables(renderer: Renderer, template: str) -> None:
    rendered = renderer.render(context_for(template, WHATSAPP), USERS)
    assert rendered.channel is WHATSAPP
    assert rendered.destination == SUBSCRIBER.phone_number
    assert rendered.text == EXPECTED_WHATSAPP[template]
    assert rendered.whatsapp_variables == {
        "1": "Pat",
        "2": "Alex Morgan",
        "3": EXPECTED_WHATSAPP_THIRD[template],
    }
    assert rendered.subject is None
    assert rendered.html is None


@pytest.mark.parametrize("channel", [SMS, WHATSAPP])
@pytest.mark.parametrize(
    "template", ["SubscriberApprovedData", "SubscriberRequestedData"]
)
def test_email_only_template_other_channel_rejected(
    renderer: Renderer, template: str, channel: NotificationChannel
) -> None:
    error = render_error(renderer, context_for(template, channel), USERS)
    assert str(error) == f"Template not found for channel {channel.value}"
    assert error.retryable is False


def test_empty_notes_use_note_template(
    renderer: Renderer,
) -> None:
    notification = LabourCompletedNotification(labour_id=LABOUR_ID, notes="")
    rendered = renderer.render(subscriber_context(notification, SMS), USERS)
    assert rendered.template == "LabourCompletedWithNoteData"
    assert rendered.template_data["update"] == ""
    assert rendered.text == "Hi Pat, Alex's baby has arrived! They wrote:"


def test_empty_notes_email_omits_note(
    renderer: Renderer,
) -> None:
    notification = LabourCompletedNotification(labour_id=LABOUR_ID, notes="")
    rendered = renderer.render(subscriber_context(notification), USERS)
    assert rendered.html is not None
    assert "They wrote" not in rendered.text
    assert "They wrote" not in rendered.html


def test_rendered_notification_frozen(renderer: Renderer) -> None:
    rendered = renderer.render(context_for("LabourBegunData"), USERS)
    assert isinstance(rendered, RenderedNotification)
    with pytest.raises(AttributeError):
        rendered.text = "changed"  # type: ignore[misc]


# Names


def test_recipient_first_name_prefers_first_name() -> None:
    assert recipient_first_name(SUBSCRIBER) == "Pat"


def test_recipient_first_name_falls_back_to_name() -> None:
    user = User(user_id="u", issuer="i", name="Patricia Lee")
    assert recipient_first_name(user) == "Patricia Lee"


def test_recipient_first_name_falls_back_to_there() -> None:
    assert recipient_first_name(User(user_id="u", issuer="i")) == "there"


def test_recipient_first_name_blank_is_absent() -> None:
    user = User(user_id="u", issuer="i", first_name="  ", name="Patricia Lee")
    assert recipient_first_name(user) == "Patricia Lee"


def test_sender_name_prefers_name() -> None:
    assert sender_name(MOTHER) == "Alex Morgan"


def test_sender_name_without_name_is_unknown() -> None:
    user = User(user_id="u", issuer="i", first_name="Alex")
    assert sender_name(user) == "Unknown"


def test_sender_name_without_row_is_unknown() -> None:
    assert sender_name(None) == "Unknown"


def test_sender_first_name_prefers_first_name() -> None:
    user = User(user_id="u", issuer="i", first_name="Lexi", name="Alex Morgan")
    assert sender_first_name(user) == "Lexi"


def test_sender_first_name_first_word_of_name() -> None:
    user = User(user_id="u", issuer="i", name="Alex Jordan Morgan")
    assert sender_first_name(user) == "Alex"


def test_sender_first_name_splits_on_any_whitespace() -> None:
    user = User(user_id="u", issuer="i", name="  Alex\tMorgan")
    assert sender_first_name(user) == "Alex"


def test_sender_first_name_without_names_is_unknown() -> None:
    assert sender_first_name(User(user_id="u", issuer="i")) == "Unknown"


def test_sender_first_name_without_row_is_unknown() -> None:
    assert sender_first_name(None) == "Unknown"


def test_requester_name_prefers_name() -> None:
    assert requester_name(REQUESTER) == "Sam Rivers"


def test_requester_name_without_name_is_someone() -> None:
    user = User(user_id="u", issuer="i", first_name="Sam")
    assert requester_name(user) == "Someone"


def test_requester_name_without_row_is_someone() -> None:
    assert requester_name(None) == "Someone"


def test_render_subscriber_without_names_greets_there(renderer: Renderer) -> None:
    nameless = User(user_id=SUBSCRIBER_ID, issuer="i", phone_number="+447700900123")
    rendered = renderer.render(
        context_for("LabourBegunData", SMS), with_users(nameless)
    )
    assert rendered.template_data["subscriber_first_name"] == "there"
    assert rendered.text.startswith("Hi there, Alex has gone into labour.")


def test_render_subscriber_with_name_only_greets_name(renderer: Renderer) -> None:
    named = User(
        user_id=SUBSCRIBER_ID,
        issuer="i",
        phone_number="+447700900123",
        name="Patricia Lee",
    )
    rendered = renderer.render(context_for("LabourBegunData", SMS), with_users(named))
    assert rendered.template_data["subscriber_first_name"] == "Patricia Lee"


def test_render_mother_with_name_only_uses_first_word(renderer: Renderer) -> None:
    mother = User(user_id=MOTHER_ID, issuer="i", name="Alex Morgan")
    rendered = renderer.render(context_for("LabourBegunData"), with_users(mother))
    assert rendered.template_data["birthing_person_name"] == "Alex Morgan"
    assert rendered.template_data["birthing_person_first_name"] == "Alex"


def test_render_mother_first_name_only(
    renderer: Renderer,
) -> None:
    mother = User(user_id=MOTHER_ID, issuer="i", first_name="Alex")
    rendered = renderer.render(context_for("LabourBegunData"), with_users(mother))
    assert rendered.template_data["birthing_person_name"] == "Unknown"
    assert rendered.template_data["birthing_person_first_name"] == "Alex"
    assert rendered.subject == "Unknown has gone into labour"


def test_render_mother_without_row_is_unknown(renderer: Renderer) -> None:
    rendered = renderer.render(context_for("LabourBegunData"), without_user(MOTHER_ID))
    assert rendered.template_data["birthing_person_name"] == "Unknown"
    assert rendered.template_data["birthing_person_first_name"] == "Unknown"
    assert rendered.subject == "Unknown has gone into labour"


def test_render_invite_mother_without_row_is_unknown(renderer: Renderer) -> None:
    rendered = renderer.render(invite_context(), without_user(MOTHER_ID))
    assert rendered.subject == "Unknown invites you to follow their labour"
    assert rendered.template_data["birthing_person_first_name"] == "Unknown"


def test_render_subject_joins_lines_of_name(renderer: Renderer) -> None:
    mother = User(user_id=MOTHER_ID, issuer="i", name="Alex\r\nBcc: x@example.com")
    rendered = renderer.render(context_for("LabourBegunData"), with_users(mother))
    assert rendered.subject == "Alex Bcc: x@example.com has gone into labour"


# Mother context


def test_requested_names_requester(renderer: Renderer) -> None:
    rendered = renderer.render(mother_context(), USERS)
    assert rendered.template == "SubscriberRequestedData"
    assert rendered.template_data["subscriber_name"] == "Sam Rivers"
    assert rendered.subject == "Sam Rivers would like to follow your labour"
    assert rendered.text.startswith("Hi Alex,")


def test_requested_without_requester_row_someone(
    renderer: Renderer,
) -> None:
    rendered = renderer.render(mother_context(), without_user(REQUESTER_ID))
    assert rendered.template_data["subscriber_name"] == "Someone"
    assert rendered.subject == "Someone would like to follow your labour"


def test_requested_without_requester_name_someone(
    renderer: Renderer,
) -> None:
    requester = User(user_id=REQUESTER_ID, issuer="i", first_name="Sam")
    rendered = renderer.render(mother_context(), with_users(requester))
    assert rendered.template_data["subscriber_name"] == "Someone"


def test_requested_greets_mother_by_name(
    renderer: Renderer,
) -> None:
    mother = User(
        user_id=MOTHER_ID, issuer="i", email="alex@example.org", name="Alex Morgan"
    )
    rendered = renderer.render(mother_context(), with_users(mother))
    assert rendered.template_data["birthing_person_first_name"] == "Alex Morgan"


def test_requested_mother_without_names_there(
    renderer: Renderer,
) -> None:
    mother = User(user_id=MOTHER_ID, issuer="i", email="alex@example.org")
    rendered = renderer.render(mother_context(), with_users(mother))
    assert rendered.template_data["birthing_person_first_name"] == "there"
    assert rendered.text.startswith("Hi there,")


# Invites


def test_render_invite_goes_to_address(renderer: Renderer) -> None:
    rendered = renderer.render(invite_context("new.friend@example.co.uk"), USERS)
    assert rendered.channel is EMAIL
    assert rendered.destination == "new.friend@example.co.uk"
    assert rendered.recipient_id == "new.friend@example.co.uk"
    assert rendered.template == "LabourInviteData"


def test_render_invite_needs_no_recipient_row(renderer: Renderer) -> None:
    rendered = renderer.render(invite_context(), {MOTHER_ID: MOTHER})
    assert rendered.destination == INVITE_ADDRESS


@pytest.mark.parametrize(
    "address", ["not-an-address", "a@b@example.com", "a b@example.com", "a@example"]
)
def test_render_invite_to_invalid_address_rejected(
    renderer: Renderer, address: str
) -> None:
    error = render_error(renderer, invite_context(address), USERS)
    assert str(error) == "invalid destination for EMAIL"
    assert error.retryable is False


# Link


@pytest.mark.parametrize("template", ALL_TEMPLATES)
def test_render_link_is_public_url_bare(template: str) -> None:
    renderer = Renderer("https://fern.example.com:8443")
    rendered = renderer.render(context_for(template), USERS)
    assert rendered.template_data["link"] == "https://fern.example.com:8443"
    assert str(LABOUR_ID) not in rendered.text
    assert str(SUBSCRIPTION_ID) not in rendered.text


# Failures


@pytest.mark.parametrize("channel", [EMAIL, SMS, WHATSAPP])
def test_render_recipient_without_row_rejected(
    renderer: Renderer, channel: NotificationChannel
) -> None:
    context = context_for("LabourBegunData", channel)
    error = render_error(renderer, context, without_user(SUBSCRIBER_ID))
    assert str(error) == f"user not found: {SUBSCRIBER_ID}"
    assert error.retryable is False


def test_render_mother_without_row_rejected(renderer: Renderer) -> None:
    error = render_error(renderer, mother_context(), without_user(MOTHER_ID))
    assert str(error) == f"user not found: {MOTHER_ID}"


@pytest.mark.parametrize("email", [None, ""])
def test_render_missing_email_rejected(renderer: Renderer, email: str | None) -> None:
    user = User(user_id=SUBSCRIBER_ID, issuer="i", email=email, first_name="Pat")
    error = render_error(renderer, context_for("LabourBegunData"), with_users(user))
    assert str(error) == f"user {SUBSCRIBER_ID} has no email"
    assert error.retryable is False


def test_render_mother_without_email_rejected(renderer: Renderer) -> None:
    mother = User(user_id=MOTHER_ID, issuer="i", name="Alex Morgan")
    error = render_error(renderer, mother_context(), with_users(mother))
    assert str(error) == f"user {MOTHER_ID} has no email"


@pytest.mark.parametrize("channel", [SMS, WHATSAPP])
@pytest.mark.parametrize("phone_number", [None, ""])
def test_render_missing_phone_number_rejected(
    renderer: Renderer, channel: NotificationChannel, phone_number: str | None
) -> None:
    user = User(user_id=SUBSCRIBER_ID, issuer="i", phone_number=phone_number)
    error = render_error(
        renderer, context_for("LabourBegunData", channel), with_users(user)
    )
    assert str(error) == f"user {SUBSCRIBER_ID} has no phone number"
    assert error.retryable is False


@pytest.mark.parametrize(
    "email", ["pat.example.org", "pat@example", "pat @example.org", "@example.org"]
)
def test_render_invalid_email_rejected(renderer: Renderer, email: str) -> None:
    user = User(user_id=SUBSCRIBER_ID, issuer="i", email=email)
    error = render_error(renderer, context_for("LabourBegunData"), with_users(user))
    assert str(error) == "invalid destination for EMAIL"
    assert error.retryable is False


@pytest.mark.parametrize("channel", [SMS, WHATSAPP])
@pytest.mark.parametrize(
    "phone_number",
    [
        "07700900123",
        "+",
        "+44 7700 900123",
        "+44-7700-900123",
        "+1234567890123456",
        "+447700900123\n",
        "+４４７７００",
    ],
)
def test_render_invalid_phone_number_rejected(
    renderer: Renderer, channel: NotificationChannel, phone_number: str
) -> None:
    user = User(user_id=SUBSCRIBER_ID, issuer="i", phone_number=phone_number)
    error = render_error(
        renderer, context_for("LabourBegunData", channel), with_users(user)
    )
    assert str(error) == f"invalid destination for {channel.value}"
    assert error.retryable is False


@pytest.mark.parametrize("phone_number", ["+1", "+123456789012345"])
def test_render_phone_number_length_bounds_accepted(
    renderer: Renderer, phone_number: str
) -> None:
    user = User(user_id=SUBSCRIBER_ID, issuer="i", phone_number=phone_number)
    rendered = renderer.render(context_for("LabourBegunData", SMS), with_users(user))
    assert rendered.destination == phone_number


def test_render_channel_checked_before_recipient(renderer: Renderer) -> None:
    context = context_for("SubscriberApprovedData", SMS)
    error = render_error(renderer, context, without_user(SUBSCRIBER_ID))
    assert str(error) == "Template not found for channel SMS"


# HTML escaping

SCRIPT = "<script>alert(1)</script>"


def assert_inert(markup: str | None) -> None:
    assert markup is not None
    assert "<script" not in markup
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in markup


def test_render_html_escapes_announcement(renderer: Renderer) -> None:
    notification = AnnouncementPostedNotification(
        labour_id=LABOUR_ID, message=f"Hello {SCRIPT}"
    )
    rendered = renderer.render(subscriber_context(notification), USERS)
    assert_inert(rendered.html)


def test_render_html_escapes_notes(renderer: Renderer) -> None:
    notification = LabourCompletedNotification(labour_id=LABOUR_ID, notes=SCRIPT)
    rendered = renderer.render(subscriber_context(notification), USERS)
    assert_inert(rendered.html)


def test_render_html_escapes_mother_name(renderer: Renderer) -> None:
    mother = User(user_id=MOTHER_ID, issuer="i", name=f"Alex {SCRIPT}")
    rendered = renderer.render(context_for("LabourBegunData"), with_users(mother))
    assert_inert(rendered.html)


def test_render_html_escapes_subscriber_name(renderer: Renderer) -> None:
    user = User(
        user_id=SUBSCRIBER_ID, issuer="i", email="pat@example.org", first_name=SCRIPT
    )
    rendered = renderer.render(context_for("SubscriberApprovedData"), with_users(user))
    assert_inert(rendered.html)


def test_render_html_escapes_requester_name(renderer: Renderer) -> None:
    requester = User(user_id=REQUESTER_ID, issuer="i", name=SCRIPT)
    rendered = renderer.render(mother_context(), with_users(requester))
    assert_inert(rendered.html)


def test_render_text_parts_unescaped(renderer: Renderer) -> None:
    notification = AnnouncementPostedNotification(
        labour_id=LABOUR_ID, message="Tom & Jerry <3"
    )
    email = renderer.render(subscriber_context(notification), USERS)
    sms = renderer.render(subscriber_context(notification, SMS), USERS)
    assert "Tom & Jerry <3" in email.text
    assert sms.text.endswith("Tom & Jerry <3")


# SMS length


def test_render_sms_long_announcement_cut_to_limit(renderer: Renderer) -> None:
    message = "x" * 1000
    notification = AnnouncementPostedNotification(labour_id=LABOUR_ID, message=message)
    rendered = renderer.render(subscriber_context(notification, SMS), USERS)
    assert len(rendered.text) == SMS_MAX_LENGTH
    assert rendered.text.startswith("Hi Pat, Alex shared an update: xxx")
    assert rendered.text.endswith("x" + ELLIPSIS)


def test_render_sms_cut_keeps_full_template_data(renderer: Renderer) -> None:
    message = "x" * 1000
    notification = AnnouncementPostedNotification(labour_id=LABOUR_ID, message=message)
    rendered = renderer.render(subscriber_context(notification, SMS), USERS)
    assert rendered.template_data["announcement"] == message


def test_render_sms_long_notes_cut_to_limit(renderer: Renderer) -> None:
    notification = LabourCompletedNotification(labour_id=LABOUR_ID, notes="y " * 400)
    rendered = renderer.render(subscriber_context(notification, SMS), USERS)
    assert len(rendered.text) <= SMS_MAX_LENGTH
    assert rendered.text.endswith("y" + ELLIPSIS)


def test_render_sms_at_limit_not_cut(renderer: Renderer) -> None:
    prefix = "Hi Pat, Alex shared an update: "
    message = "z" * (SMS_MAX_LENGTH - len(prefix))
    notification = AnnouncementPostedNotification(labour_id=LABOUR_ID, message=message)
    rendered = renderer.render(subscriber_context(notification, SMS), USERS)
    assert rendered.text == prefix + message


def test_render_sms_one_over_limit_cut(renderer: Renderer) -> None:
    prefix = "Hi Pat, Alex shared an update: "
    message = "z" * (SMS_MAX_LENGTH - len(prefix) + 1)
    notification = AnnouncementPostedNotification(labour_id=LABOUR_ID, message=message)
    rendered = renderer.render(subscriber_context(notification, SMS), USERS)
    assert len(rendered.text) == SMS_MAX_LENGTH
    assert rendered.text == prefix + message[: len(message) - 2] + ELLIPSIS


def test_render_whatsapp_long_announcement_not_cut(renderer: Renderer) -> None:
    message = "x" * 1000
    notification = AnnouncementPostedNotification(labour_id=LABOUR_ID, message=message)
    rendered = renderer.render(subscriber_context(notification, WHATSAPP), USERS)
    assert rendered.text.endswith(message)
    assert rendered.whatsapp_variables is not None
    assert rendered.whatsapp_variables["3"] == message


@pytest.fixture
def linked_sms_templates(tmp_path: Path) -> Path:
    """Return a copy of the default templates whose announcement SMS ends with
    the link, as an operator may reword it."""
    template_dir = tmp_path / "templates"
    shutil.copytree(DEFAULT_TEMPLATE_DIR, template_dir)
    (template_dir / "LabourAnnouncementData.sms.txt").write_text(
        "{{ birthing_person_first_name }}: {{ announcement }} More: {{ link }}\n"
    )
    return template_dir


def test_render_sms_cut_keeps_link_intact(linked_sms_templates: Path) -> None:
    renderer = Renderer(LINK, linked_sms_templates)
    notification = AnnouncementPostedNotification(
        labour_id=LABOUR_ID, message="word " * 200
    )
    rendered = renderer.render(subscriber_context(notification, SMS), USERS)
    assert len(rendered.text) <= SMS_MAX_LENGTH
    assert rendered.text.startswith("Alex: word word")
    assert rendered.text.endswith(f"w{ELLIPSIS} More: {LINK}")


def test_render_sms_custom_template_uncut(
    linked_sms_templates: Path,
) -> None:
    renderer = Renderer(LINK, linked_sms_templates)
    rendered = renderer.render(context_for("LabourAnnouncementData", SMS), USERS)
    assert rendered.text == f"Alex: {ANNOUNCEMENT} More: {LINK}"


# Template folder


def test_renderer_missing_file_rejected(
    tmp_path: Path,
) -> None:
    template_dir = tmp_path / "templates"
    shutil.copytree(DEFAULT_TEMPLATE_DIR, template_dir)
    (template_dir / "LabourBegunData.sms.txt").unlink()
    with pytest.raises(jinja2.TemplateNotFound):
        Renderer(LINK, template_dir)


def test_renderer_unknown_field_rejected(tmp_path: Path) -> None:
    template_dir = tmp_path / "templates"
    shutil.copytree(DEFAULT_TEMPLATE_DIR, template_dir)
    (template_dir / "LabourInviteData.subject.txt").write_text(
        "{{ subscriber_first_name }}, you are invited\n"
    )
    with pytest.raises(jinja2.UndefinedError):
        Renderer(LINK, template_dir)


def test_render_template_error_wrapped(
    tmp_path: Path,
) -> None:
    template_dir = tmp_path / "templates"
    shutil.copytree(DEFAULT_TEMPLATE_DIR, template_dir)
    (template_dir / "LabourCompletedWithNoteData.txt").write_text(
        "{% if update %}{{ update }}{% else %}{{ missing }}{% endif %} {{ link }}\n"
    )
    renderer = Renderer(LINK, template_dir)
    notification = LabourCompletedNotification(labour_id=LABOUR_ID, notes="")
    error = render_error(renderer, subscriber_context(notification), USERS)
    assert str(error).startswith(
        "Template LabourCompletedWithNoteData.txt failed to render:"
    )
    assert error.retryable is False


def test_default_templates_complete() -> None:
    names = {path.name for path in DEFAULT_TEMPLATE_DIR.iterdir()}
    for template in ALL_TEMPLATES:
        for part in ("subject.txt", "txt", "html"):
            assert f"{template}.{part}" in names
    for template in ALL_CHANNEL_TEMPLATES:
        for part in ("sms.txt", "whatsapp.txt"):
            assert f"{template}.{part}" in names
