"""The sightings a run meets, kept per record and spread over its entries at the end of a pull
(docs/design.md#provenance-and-audit)."""

from __future__ import annotations

import random

import redis

from threatshare.indicators.evidence import url_evidence
from threatshare.state.provenance import KEEP, MessageKey, ProvenanceBook
from threatshare.sync.sightings import Sightings

KEY = MessageKey("account-secret")


def _record(message: str, category: str = "Phishing") -> dict[str, object]:
    return {"url": "https://evil.example/x", "category": category, "messageId": message}


def _sightings(client: redis.Redis) -> tuple[Sightings, ProvenanceBook]:
    book = ProvenanceBook(client, "urls")
    return Sightings(book, KEY, ["malicious_urls", "url_domains"]), book


def test_records_in_any_order_keep_their_newest_three_and_their_count(
    redis_client: redis.Redis,
) -> None:
    """Whatever order the records come in, each entry keeps the count of all of them and the
    three newest, newest first, with the message id hashed."""
    sightings, book = _sightings(redis_client)
    times = list(range(100, 120))
    random.Random(7).shuffle(times)
    for at in times:
        sightings.add(["evil.example/x", "evil.example"], at, url_evidence, _record(f"<m{at}>"))
    sightings.flush(known=())
    found = book.get(["evil.example/x", "evil.example"])
    for entry in ("evil.example/x", "evil.example"):
        assert found[entry].sightings == 20
        assert [s.at for s in found[entry].evidence] == [119, 118, 117]
        assert found[entry].evidence[0].message == KEY("<m119>")
    assert found["evil.example/x"].sources == ["malicious_urls"]
    assert found["evil.example"].sources == ["url_domains"]


def test_records_with_equal_times_keep_the_newest_times(redis_client: redis.Redis) -> None:
    """Records sharing a time, in any order, among older and newer ones: the three kept are
    three of the newest times, each with a message of its own time."""
    for seed in range(20):
        sightings, book = _sightings(redis_client)
        rng = random.Random(seed)
        times = [rng.choice((5, 7, 9, 9, 12, 12)) for _ in range(8)]
        for n, at in enumerate(times):
            sightings.add(["evil.example/x"], at, url_evidence, _record(f"<{at}-{n}>"))
        sightings.flush(known=())
        found = book.get(["evil.example/x"])["evil.example/x"]
        assert found.sightings == len(times)
        assert [s.at for s in found.evidence] == sorted(times, reverse=True)[:KEEP]
        messages = {KEY(f"<{at}-{n}>"): at for n, at in enumerate(times)}
        assert all(messages[s.message] == s.at for s in found.evidence)
        redis_client.flushdb()


def test_an_entry_from_records_of_several_kinds_adds_them_up(redis_client: redis.Redis) -> None:
    """A host met through two URLs counts the records of both and keeps the newest of all."""
    sightings, book = _sightings(redis_client)
    sightings.add(["evil.example/a", "evil.example"], 10, url_evidence, _record("<a1>"))
    sightings.add(["evil.example/a", "evil.example"], 40, url_evidence, _record("<a2>"))
    sightings.add(["evil.example/b", "evil.example"], 30, url_evidence, _record("<b1>"))
    sightings.add(["evil.example/b", "evil.example"], 20, url_evidence, _record("<b2>"))
    sightings.flush(known=())
    host = book.get(["evil.example"])["evil.example"]
    assert host.sightings == 4
    assert [s.at for s in host.evidence] == [40, 30, 20][:KEEP]
    assert book.get(["evil.example/b"])["evil.example/b"].sightings == 2


def test_dropped_entries_are_not_written(redis_client: redis.Redis) -> None:
    """An entry left out (unblocked, removed by hand) gets no provenance; the other entries of
    its records do."""
    sightings, book = _sightings(redis_client)
    sightings.add(["gone.example/x", "gone.example"], 10, url_evidence, _record("<g>"))
    sightings.drop("gone.example")
    sightings.flush(known=())
    assert set(book.get(["gone.example", "gone.example/x"])) == {"gone.example/x"}
    assert not sightings


def test_known_entries_merge_and_new_ones_keep_what_is_there(redis_client: redis.Redis) -> None:
    """An entry of the category merges the run's sightings into its provenance; an entry met
    for the first time is written as it is, without overwriting one already stored."""
    sightings, book = _sightings(redis_client)
    sightings.add(["held.example", "new.example"], 10, url_evidence, _record("<1>"))
    sightings.flush(known=())
    sightings.add(["held.example", "new.example"], 20, url_evidence, _record("<2>"))
    sightings.flush(known={"held.example"})
    found = book.get(["held.example", "new.example"])
    assert found["held.example"].sightings == 2
    assert [s.at for s in found["held.example"].evidence] == [20, 10]
    assert found["new.example"].sightings == 1  # written first, kept as it was


def test_untrusted_verdicts_and_message_ids_are_cleaned_before_they_are_kept(
    redis_client: redis.Redis,
) -> None:
    """A verdict with control characters is stored flattened, and a message id is hashed as
    cleaned; plain ones are stored as sent."""
    sightings, book = _sightings(redis_client)
    sightings.add(["a.example"], 10, url_evidence, _record("<id>\r\n", "Phish\x1b[31ming\n"))
    sightings.add(["b.example"], 10, url_evidence, _record("<id>", "Phishing"))
    sightings.flush(known=())
    found = book.get(["a.example", "b.example"])
    assert found["a.example"].evidence[0].verdict == "Phish [31ming"
    assert found["a.example"].evidence[0].message == KEY("<id>")
    assert found["b.example"].evidence[0].verdict == "Phishing"
    raw = b"".join(redis_client.hvals(book.key))
    assert b"\x1b" not in raw and b"<id" not in raw


def test_each_entry_s_newest_record_time_comes_from_every_record_kind() -> None:
    """An entry's newest time is the newest record of any kind that produced it, whatever the
    order the records came in; only the first record of a kind is reported as new."""
    sightings = Sightings(ProvenanceBook(redis.Redis(), "urls"), KEY, ["url_domains"])
    assert sightings.add(["evil.example/a", "evil.example"], 50, url_evidence, _record("<1>"))
    assert not sightings.add(["evil.example/a", "evil.example"], 20, url_evidence, _record("<2>"))
    assert sightings.add(["evil.example/b", "evil.example"], 70, url_evidence, _record("<3>"))
    for at in (10, 90, 30, 40, 5):  # out of order, more than are kept
        sightings.add(["evil.example/a", "evil.example"], at, url_evidence, _record(f"<{at}>"))
    assert sightings.newest() == {
        "evil.example/a": 90,
        "evil.example/b": 70,
        "evil.example": 90,
    }
