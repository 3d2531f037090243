"""What a record says of the threat it reports: its verdict and message id
(docs/design.md#provenance-and-audit)."""

from __future__ import annotations

from threatshare.indicators.evidence import MAX_VERDICT, impersonation_evidence, url_evidence


def test_an_impersonation_verdict_names_the_domain_identifiers_that_fired() -> None:
    """Only domain-type identifiers make the verdict, sorted; name-type ones are left out."""
    record = {
        "identifiers": ["newly_observed_domain", "internal_user_name", "similar_internal_domain"],
        "messageId": "<m@x>",
    }
    assert impersonation_evidence(record) == (
        "newly_observed_domain,similar_internal_domain",
        "<m@x>",
    )


def test_the_detailed_results_serve_when_the_list_names_no_domain_identifier() -> None:
    """A record whose list holds no domain identifier takes them from its detailed results;
    values that are not text are ignored."""
    record = {
        "identifiers": ["internal_user_name", 7],
        "impersonationResults": [
            {"impersonationDomainSource": "custom_external_domain"},
            {"impersonationDomainSource": None},
            "junk",
        ],
    }
    assert impersonation_evidence(record)[0] == "custom_external_domain"
    assert impersonation_evidence({"identifiers": "similar_internal_domain"})[0] == ""
    assert impersonation_evidence(["not", "a", "record"]) == ("", "")


def test_an_oversized_identifier_list_gives_the_same_verdict_uncached() -> None:
    """Identifiers far longer than Mimecast's own still give the verdict they make."""
    junk = "x" * (MAX_VERDICT * 10)
    record = {"identifiers": [junk, "similar_internal_domain"]}
    assert impersonation_evidence(record)[0] == "similar_internal_domain"


def test_a_url_verdict_is_its_category_else_its_scan_result() -> None:
    """A URL log's verdict is its category, or its scan result when it has none."""
    assert url_evidence({"category": "Phishing", "messageId": "<a>"}) == ("Phishing", "<a>")
    assert url_evidence({"scanResult": "malicious"}) == ("malicious", None)
    assert url_evidence(None) == ("", "")
