"""Whom a dead letter came from: only what the broker authenticated (DESIGN decision 8)."""

from __future__ import annotations

import base64
import hashlib

from adapter.broker import PUBLISHER_HEADER, authenticated_publisher
from adapter.messages import ORIGIN_HEADER, REPLAYED_HEADER
from adapter.ops.dlq import replay_headers
from adapter.ops.provision import password_hash

OWN = "sr-user"


def test_a_letter_of_this_schools_own_user_names_its_publisher_in_the_header() -> None:
    """Only this school's user writes into its dead-letter exchange, so its header holds."""
    assert authenticated_publisher(OWN, {PUBLISHER_HEADER: "ka-user"}, OWN) == "ka-user"


def test_a_letter_of_another_user_is_its_own_publisher_whatever_its_header_says() -> None:
    """A message the broker dead-lettered keeps its publisher's user and headers: a header
    naming another school's user is that publisher's forgery."""
    assert authenticated_publisher("hof-user", {PUBLISHER_HEADER: "ka-user"}, OWN) == "hof-user"
    assert authenticated_publisher(None, {PUBLISHER_HEADER: "ka-user"}, OWN) is None


def test_an_empty_publisher_header_means_unknown_not_this_school() -> None:
    """A letter whose publisher was never authenticated does not become this school's own."""
    assert authenticated_publisher(OWN, {PUBLISHER_HEADER: ""}, OWN) is None
    assert authenticated_publisher(OWN, {}, OWN) == OWN


def test_replay_keeps_only_the_authenticated_publisher_of_vhs_syncs_headers() -> None:
    """Replay strips every vhs-sync header but the publisher, which it sets from what the
    broker authenticated, and marks the letter replayed; foreign headers stay."""
    forged = {
        PUBLISHER_HEADER: "ka-user",
        ORIGIN_HEADER: "vhs-ka",
        REPLAYED_HEADER: True,
        "x-vhs-sync-reason": "origin_not_authenticated",
        "x-death": [{"count": 1}],
    }
    assert replay_headers(forged, "hof-user", OWN) == {
        PUBLISHER_HEADER: "hof-user",
        REPLAYED_HEADER: True,
        "x-death": [{"count": 1}],
    }
    assert replay_headers(forged, OWN, OWN)[PUBLISHER_HEADER] == "ka-user"


def test_password_hashes_are_rabbitmqs_salted_sha256() -> None:
    """base64(salt + sha256(salt + password)), a fresh 4-byte salt each time."""
    raw = base64.b64decode(password_hash("s3cret", b"\x01\x02\x03\x04"))
    assert raw == b"\x01\x02\x03\x04" + hashlib.sha256(b"\x01\x02\x03\x04s3cret").digest()
    assert password_hash("s3cret") != password_hash("s3cret")
