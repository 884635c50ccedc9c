"""What the dlq tools believe of a letter, which letters a selection means, and what they show
of personal data."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from adapter import broker
from adapter.domain import CourseRef
from adapter.mapping import routes
from adapter.ops.dlq import (
    DELIVERY_COUNT_HEADER,
    DeadLetter,
    Selection,
    account,
    copy_headers,
    excerpt,
    groups,
    mask,
    page,
    record,
    render,
    replay_headers,
)

OWN, KA, HOF = "sr-user", "ka-user", "hof-user"
SCHOOLS = {OWN: "vhs-sr", KA: "vhs-ka", HOF: "vhs-hof"}
COURSE = CourseRef("vhs-sr", "26-A.1")
KA_KEY = routes.personal(COURSE, "vhs-ka")
HOF_KEY = routes.personal(COURSE, "vhs-hof")
PARTICIPANT = {
    "last_name": "Nowak",
    "first_name": "Jan",
    "main_email": "jan@example.org",
    "main_phone": "+49 721 1234",
}
BODY = {
    "id": "e-1",
    "subject": "vhs-sr/26-A.1/4711",
    "data": {"origin_school": "vhs-ka", "participant_number": 4711, "participant": PARTICIPANT},
}


def letter(
    message_id: str,
    reason: str,
    routing_key: str,
    *,
    position: int = 1,
    body: bytes = b"{}",
    headers: dict[str, Any] | None = None,
) -> DeadLetter:
    route = routes.parse(routing_key)
    return DeadLetter(
        message_id=message_id,
        reason=reason,
        detail="",
        rejected_at="",
        routing_key=routing_key,
        size=len(body),
        position=position,
        origin=route.origin if route else None,
        course=route.course if route else None,
        headers=headers or {},
        body=body,
    )


def death(key: str, reason: str = "delivery_limit") -> dict[str, Any]:
    return {
        "x-death": [
            {
                "count": 1,
                "reason": reason,
                "queue": "net.vhs-sr",
                "routing-keys": [key],
                "time": datetime(2026, 12, 1, 12, tzinfo=UTC),
            }
        ]
    }


def test_a_letter_of_this_schools_own_user_is_believed_as_its_receiver_wrote_it() -> None:
    """Reason, detail, time, routing key and publisher come from vhs-sync's headers."""
    headers = {
        broker.REASON_HEADER: "unknown_course",
        broker.DETAIL_HEADER: "course 26-A.1",
        broker.REJECTED_AT_HEADER: "2026-12-01T12:00:00+00:00",
        broker.ROUTING_KEY_HEADER: KA_KEY,
        broker.PUBLISHER_HEADER: KA,
    }
    said = account(headers, OWN, OWN, SCHOOLS)
    assert (said.reason, said.detail, said.routing_key, said.publisher) == (
        "unknown_course",
        "course 26-A.1",
        KA_KEY,
        KA,
    )


def test_a_letter_the_broker_dead_lettered_is_read_from_x_death_not_its_publishers_headers() -> (
    None
):
    """vhs-hof's letter that hit the delivery limit claims another reason, key and publisher in
    vhs-sync's headers: what counts is the broker's `x-death` and vhs-hof's verified user."""
    forged = {
        broker.REASON_HEADER: "replay_me",
        broker.ROUTING_KEY_HEADER: KA_KEY,
        broker.PUBLISHER_HEADER: KA,
        **death(HOF_KEY),
    }
    said = account(forged, HOF, OWN, SCHOOLS)
    assert (said.reason, said.routing_key, said.publisher) == ("delivery_limit", HOF_KEY, HOF)
    assert said.rejected_at == "2026-12-01T12:00:00+00:00"


def test_an_x_death_key_naming_another_origin_than_its_publisher_is_not_believed() -> None:
    """A publisher can write `x-death` itself; a key whose origin is not the publisher's school
    is one it could not have published, so the letter's origin is unknown."""
    assert account(death(KA_KEY), HOF, OWN, SCHOOLS).routing_key == ""
    assert account(death(KA_KEY), "stranger", OWN, SCHOOLS).routing_key == ""
    assert account(death(KA_KEY), "guest", "guest", None).routing_key == KA_KEY


def test_a_copy_of_a_foreign_letter_carries_what_is_believed_and_no_delivery_count() -> None:
    """Copied back by this school's user, a letter the broker dead-lettered must not turn its
    publisher's forged headers into believed ones; its own letters keep theirs as they are."""
    forged = {
        broker.REASON_HEADER: "replay_me",
        broker.PUBLISHER_HEADER: KA,
        "x-vhs-sync-origin": "vhs-ka",
        DELIVERY_COUNT_HEADER: 3,
        "custom": "kept",
        **death(HOF_KEY),
    }
    said = account(forged, HOF, OWN, SCHOOLS)
    seen = replace(letter("m-1", said.reason, said.routing_key), publisher=said.publisher)
    copied = copy_headers(forged, seen, HOF, OWN)
    assert DELIVERY_COUNT_HEADER not in copied
    assert copied["custom"] == "kept"
    assert copied["x-death"] == forged["x-death"]
    assert "x-vhs-sync-origin" not in copied
    assert copied[broker.REASON_HEADER] == "delivery_limit"
    assert copied[broker.ROUTING_KEY_HEADER] == HOF_KEY
    assert copied[broker.PUBLISHER_HEADER] == HOF
    assert account(copied, OWN, OWN, SCHOOLS).reason == "delivery_limit"
    lying = {**death(KA_KEY), broker.ROUTING_KEY_HEADER: KA_KEY}
    unbelieved = replace(seen, routing_key=account(lying, HOF, OWN, SCHOOLS).routing_key)
    copied_again = copy_headers(lying, unbelieved, HOF, OWN)
    assert account(copied_again, OWN, OWN, SCHOOLS).routing_key == ""
    own = {broker.REASON_HEADER: "unknown_course", DELIVERY_COUNT_HEADER: 1, "a": 1}
    assert copy_headers(own, seen, OWN, OWN) == {broker.REASON_HEADER: "unknown_course", "a": 1}


def test_a_replayed_letter_names_the_key_it_was_first_published_with() -> None:
    """The receiver records it again, so a letter dead-lettered after a replay keeps its origin."""
    headers = replay_headers({broker.ROUTING_KEY_HEADER: "forged"}, KA, OWN, KA_KEY)
    assert headers[broker.ROUTING_KEY_HEADER] == KA_KEY
    assert broker.ROUTING_KEY_HEADER not in replay_headers({}, KA, OWN)


def test_a_selection_narrows_by_kind_and_widens_within_one() -> None:
    """Two reasons are either; a reason and an origin are both; a course is its number or
    master/number; an empty selection means every letter."""
    letters = [
        letter("a", "unknown_course", KA_KEY),
        letter("b", "schema_violation", KA_KEY),
        letter("c", "unknown_course", HOF_KEY),
        letter("d", "invalid_json", ""),
    ]

    def chosen(selection: Selection) -> list[str | None]:
        return [x.message_id for x in letters if selection.matches(x)]

    assert chosen(Selection()) == ["a", "b", "c", "d"]
    assert chosen(Selection.of(reasons=["unknown_course", "invalid_json"])) == ["a", "c", "d"]
    assert chosen(Selection.of(reasons=["unknown_course"], origins=["vhs-ka"])) == ["a"]
    assert chosen(Selection.of(courses=["26-A.1"])) == ["a", "b", "c"]
    assert chosen(Selection.of(courses=["vhs-sr/26-A.1"], ids=["c", "d"])) == ["c"]
    assert chosen(Selection.of(courses=["vhs-ka/26-A.1"])) == []
    assert Selection().everything
    assert not Selection.of(ids=["a"]).everything


def test_groups_count_the_most_first_and_pages_slice() -> None:
    """Counts per reason and origin, unknown origins as `-`; a page is offset and limit."""
    letters = [
        letter("a", "unknown_course", KA_KEY),
        letter("b", "unknown_course", KA_KEY),
        letter("c", "unknown_course", HOF_KEY),
        letter("d", "invalid_json", ""),
    ]
    assert groups(letters, ["reason"]) == [(("unknown_course",), 3), (("invalid_json",), 1)]
    assert groups(letters, ["origin", "course"])[0] == (("vhs-ka", "vhs-sr/26-A.1"), 2)
    assert (("-", "-"), 1) in groups(letters, ["origin", "course"])
    assert [x.message_id for x in page(letters, 1, 2)] == ["b", "c"]
    assert [x.message_id for x in page(letters, 3, None)] == ["d"]


def test_personal_fields_are_masked_wherever_they_are_nested() -> None:
    """In an event and in each event of a batch: `Nowak` shows as `N***`; numbers, ids and
    the course stay readable."""
    masked = mask([BODY, BODY])
    assert masked[1]["data"]["participant"] == {
        "last_name": "N***",
        "first_name": "J***",
        "main_email": "j***",
        "main_phone": "+***",
    }
    assert masked[0]["data"]["participant_number"] == 4711
    assert masked[0]["subject"] == BODY["subject"]
    assert mask({"birthday": "1990-05-01", "main_email": None})["birthday"] == "1***"


def test_fields_named_as_the_admin_product_names_them_are_masked_too() -> None:
    """A peer that sent its admin rows as they are (KuferSQL's TEILNEHM columns, German
    names): phone and birthday are masked like the rest."""
    row = {
        "NAME": "Nowak",
        "VORNAME": "Jan",
        "TEL_ANZEIGE": "+49 170 1234567",
        "EMAIL_ANZEIGE": "jan@example.org",
        "GEBDAT": "1990-05-01",
        "IBAN": "DE89370400440532013000",
        "telefon": "0721 123456",
        "geburtstag": "1990-05-01",
        "strasse": "Hauptstr. 1",
    }
    masked = mask({"data": row, "NR": 4711})
    assert all(value.endswith("***") for value in masked["data"].values()), masked
    assert masked["NR"] == 4711


def test_show_and_export_mask_personal_data_unless_revealed() -> None:
    """Neither the rendered letter nor its exported record holds a name, email or phone,
    until `--reveal`."""
    body = json.dumps(BODY).encode()
    shown = letter("e-1", "unknown_course", KA_KEY, body=body, headers={"main_email": "j@x.org"})
    hidden = render(shown, reveal=False, total=1) + json.dumps(record(shown, reveal=False))
    for value in (*PARTICIPANT.values(), "j@x.org"):
        assert value not in hidden
    assert "N***" in hidden
    assert "26-A.1" in hidden
    revealed = record(shown, reveal=True)
    assert revealed["body"] == BODY
    assert revealed["headers"]["main_email"] == "j@x.org"
    assert "Nowak" in render(shown, reveal=True, total=1)


def test_a_body_that_is_not_json_is_shown_as_a_safe_excerpt() -> None:
    """Words masked unless revealed, control characters escaped, binary as hex only when
    revealed; an exported record then holds it byte for byte."""
    assert excerpt(b'{"last_name": "Nowak", broken', reveal=False) == '{"l***": "N***", b***'
    assert excerpt(b"Nowak\x1b[2J\n", reveal=True) == "Nowak\\x1b[2J\\n"
    assert excerpt(b"\xff\xfe\x00", reveal=False) == "<3 bytes, not UTF-8 text>"
    assert excerpt(b"\xff\xfe\x00", reveal=True) == "ff fe 00"
    binary = letter("b-1", "invalid_json", "", body=b"\xff Nowak")
    assert "body_base64" not in record(binary, reveal=False)
    assert record(binary, reveal=True)["body_base64"] == "/yBOb3dhaw=="


def test_routing_keys_name_their_origin_and_course() -> None:
    """Every kind of key reads back as the origin and course it was made of."""
    assert routes.parse(KA_KEY) == routes.Route("enr", "vhs-ka", COURSE)
    assert routes.parse(routes.control(COURSE, "vhs-hof")) == routes.Route("ctl", "vhs-hof", COURSE)
    assert routes.parse(routes.offers("vhs-ka", "vhs-sr")) == routes.Route("adv", "vhs-sr")
    assert routes.parse(routes.place_requests("vhs-sr", "vhs-ka")) == routes.Route("req", "vhs-ka")
    assert routes.parse(routes.place_answers("vhs-ka", "vhs-sr")) == routes.Route("rep", "vhs-sr")
    answer = routes.sync_answer("vhs-hof", COURSE, "vhs-ka", personal=False)
    assert routes.parse(answer) == routes.Route("syn", "vhs-ka", COURSE)
    assert routes.parse(broker.REPLAY_KEY) is None
    assert routes.parse("enr.vhs-sr.26-A.vhs-ka.other") is None
