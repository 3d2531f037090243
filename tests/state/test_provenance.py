"""The provenance of entries in Redis: merged sightings, bounded evidence, forgotten with the
entry (docs/design.md#provenance-and-audit)."""

from __future__ import annotations

import pytest
import redis

from threatshare.state.provenance import (
    KEEP,
    MessageKey,
    ProvenanceBook,
    Sighting,
    evidence_json,
    facts,
)


def test_sightings_merge_and_keep_the_newest_three(redis_client: redis.Redis) -> None:
    """Counts add up across runs and only the three newest sightings are kept, newest first."""
    book = ProvenanceBook(redis_client, "urls")
    book.record(
        {"evil.example": [Sighting(100, "Phishing", "aa"), Sighting(300, "Phishing", "bb")]},
        {"evil.example": "malicious_urls"},
    )
    book.record(
        {"evil.example": [Sighting(200, "Malware", "cc"), Sighting(400, "Phishing", "dd")]},
        {"evil.example": "url_domains"},
    )
    found = book.get(["evil.example", "other.example"])
    assert set(found) == {"evil.example"}
    prov = found["evil.example"]
    assert prov.sightings == 4
    assert [s.at for s in prov.evidence] == [400, 300, 200]
    assert len(prov.evidence) == KEEP
    assert prov.sources == ["malicious_urls", "url_domains"]
    assert prov.pushed_at is None


def test_a_reread_record_is_not_a_new_sighting(redis_client: redis.Redis) -> None:
    """The window's overlap reads a record twice; it counts once."""
    book = ProvenanceBook(redis_client, "urls")
    seen = {"evil.example": [Sighting(100, "Phishing", "aa")]}
    book.record(seen, {})
    book.record(seen, {})
    assert book.get(["evil.example"])["evil.example"].sightings == 1


def test_pushed_time_is_set_once_and_forget_drops(redis_client: redis.Redis) -> None:
    """The first push time stays; forgetting an entry removes its provenance."""
    book = ProvenanceBook(redis_client, "urls")
    book.pushed(["a.example", "b.example"], 1000)
    book.pushed(["a.example"], 2000)
    assert book.get(["a.example"])["a.example"].pushed_at == 1000
    book.forget(["a.example"])
    assert set(book.get(["a.example", "b.example"])) == {"b.example"}


def test_sweep_forgets_what_the_category_does_not_hold(redis_client: redis.Redis) -> None:
    """Provenance of entries never pushed (left out for lack of room) is swept away."""
    book = ProvenanceBook(redis_client, "urls")
    entries = [f"e{i}.example" for i in range(1200)]
    book.record({e: [Sighting(1, "Phishing", "")] for e in entries}, {})
    held = set(entries[:700])
    assert book.sweep(lambda chunk: [e in held for e in chunk]) == 500
    assert set(book.get(entries)) == held


def test_message_ids_are_hashed_with_a_key() -> None:
    """The message id is stored only as a keyed hash, different per account secret."""
    one, two = MessageKey("secret-one"), MessageKey("secret-two")
    message = "<CAF=abc@mail.example>"
    assert one(message) != two(message)
    assert one(message) == one(message) and len(one(message)) == 16
    assert message not in one(message)
    assert one(None) == "" and one("") == ""


def test_first_sightings_are_written_without_overwriting(redis_client: redis.Redis) -> None:
    """Entries met for the first time are written as they are, with the run's count of
    sightings; one that already has a provenance keeps it."""
    book = ProvenanceBook(redis_client, "urls")
    book.record({"old.example": [Sighting(50, "Phishing", "aa")]}, {})
    seen = {
        "new.example": [Sighting(100, "Phishing", "bb"), Sighting(200, "Malware", "cc")],
        "old.example": [Sighting(300, "Phishing", "dd")],
    }
    counts = {"new.example": 7, "old.example": 1}
    sources = {"new.example": "url_domains", "old.example": ""}
    book.write_new({e: facts(sources[e], counts[e], evidence_json(s)) for e, s in seen.items()})
    found = book.get(["new.example", "old.example"])
    assert found["new.example"].sightings == 7
    assert [s.at for s in found["new.example"].evidence] == [200, 100]
    assert found["new.example"].sources == ["url_domains"]
    assert [s.at for s in found["old.example"].evidence] == [50]


def test_a_count_beyond_the_kept_sightings_is_added(redis_client: redis.Redis) -> None:
    """A run that met an entry ten times passes its three newest sightings and the count: the
    count adds up, less the sightings that were re-reads."""
    book = ProvenanceBook(redis_client, "urls")
    book.record({"e.example": [Sighting(100, "Phishing", "aa")]}, {})
    newest = [Sighting(100, "Phishing", "aa"), Sighting(400, "P", "x"), Sighting(500, "P", "y")]
    book.record({"e.example": newest}, {}, {"e.example": 10})
    assert book.get(["e.example"])["e.example"].sightings == 1 + 10 - 1


def test_evidence_is_stored_as_json_whatever_its_text(redis_client: redis.Redis) -> None:
    """Verdicts with quotes, spaces or non-ASCII letters come back as they went in."""
    book = ProvenanceBook(redis_client, "urls")
    odd = ['Say "hi" \\ bye', "Dangerous file extension", "Phishing", "Fälschung", ""]
    book.record({"e.example": [Sighting(100 + i, v, "ab12") for i, v in enumerate(odd[:3])]}, {})
    book.record({"f.example": [Sighting(100 + i, v, "") for i, v in enumerate(odd[3:])]}, {})
    found = book.get(["e.example", "f.example"])
    assert [s.verdict for s in found["e.example"].evidence] == odd[:3][::-1]
    assert [s.verdict for s in found["f.example"].evidence] == odd[3:][::-1]


def test_an_entry_with_a_line_break_is_refused(redis_client: redis.Redis) -> None:
    """An entry that would shift the pairs a script reads (a line break, or none at all)
    raises before anything is written."""
    book = ProvenanceBook(redis_client, "urls")
    with pytest.raises(ValueError, match="line break"):
        book.record({"a.example\nb": [Sighting(1, "P", "")], "c.example": []}, {})
    with pytest.raises(ValueError, match="empty"):
        book.record({"": [Sighting(1, "P", "")], "c.example": []}, {})
    # Past the first chunk too: the chunks before it are not sent either.
    many = {f"n{n}.example": [Sighting(1, "P", "")] for n in range(1_200)}
    with pytest.raises(ValueError, match="line break"):
        book.record({**many, "a.example\nb": [Sighting(1, "P", "")]}, {})
    with pytest.raises(ValueError, match="line break"):
        book.write_new({**dict.fromkeys(many, "{}"), "z.example": "{\n}"})
    assert redis_client.hlen(book.key) == 0
