"""`threatshare explain` and `threatshare audit` end to end against the emulators: what blocks
a URL under ZIA's matching, with its provenance and whether it is enforced, and one audit line
for every change made to a category (docs/design.md#provenance-and-audit)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import FAST
from tests.sync.lifecycle_world import CATEGORY, Life, make_life, urls
from threatshare import cli
from threatshare.ops.explain import explain, zia_pending_reader
from threatshare.runtime import Runtime
from threatshare.sandbox.mimecast_logs import impersonation_log
from threatshare.state.audit import AuditTrail
from threatshare.sync import sync_instance
from threatshare.sync.activation import activate_pending

pytestmark = pytest.mark.usefixtures("restore_logging")

SOURCES = ["malicious_urls", "malicious_domains"]


@pytest.fixture
def life(tmp_path: Path, redis_url: str) -> Iterator[Life]:
    with make_life(tmp_path, redis_url) as life:
        yield life


def config_path(life: Life) -> Path:
    return life.world.tmp / "threatshare.toml"


def explain_json(life: Life, target: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, Any]:
    capsys.readouterr()
    code = cli.main(["--config", str(config_path(life)), "explain", target, "--json"])
    return code, json.loads(capsys.readouterr().out)


def audit_json(life: Life, capsys: pytest.CaptureFixture[str], *args: str) -> list[dict]:
    capsys.readouterr()
    assert cli.main(["--config", str(config_path(life)), "audit", "--json", *args]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


@pytest.fixture
def pushed(life: Life) -> Life:
    """A path entry, an IDN host and a look-alike sender domain, pushed and activated."""
    life.configure(sources=SOURCES)
    life.threats(["https://login.partner.example/account/reset", "https://bücher.example/"])
    life.world.sandbox.mimecast.add_impersonation_logs(
        [
            impersonation_log(
                "ceo@look-alike.example",
                life.clock.now - timedelta(minutes=20),
                ["similar_internal_domain"],
                messageId="<msg-1@look-alike.example>",
            )
        ]
    )
    assert life.run().state == "ok"
    assert life.active() == {
        "login.partner.example/account/reset",
        "xn--bcher-kva.example",
        ".look-alike.example",
    }
    return life


def test_a_url_under_a_pushed_path_is_explained(
    pushed: Life, capsys: pytest.CaptureFixture[str]
) -> None:
    """A deeper URL with a query is blocked by the shorter path entry; provenance, expiry,
    activity and the unblock line come with it, and exit code 0 says it is blocked."""
    code, out = explain_json(
        pushed, "https://Login.Partner.example/account/reset/step2?x=1", capsys
    )
    assert code == 0
    assert out["entry_form"] == "login.partner.example/account/reset/step2"
    [match] = out["matches"]
    assert match["instance"] == "life" and match["category"] == CATEGORY
    assert match["entry"] == "login.partner.example/account/reset"
    assert match["source"] == ["malicious_urls"]
    assert match["sightings"] == 1
    assert match["evidence"][0]["verdict"] == "Compromised"
    assert match["first_seen"] and match["last_seen"] and match["expires"]
    assert match["active"] is True
    assert match["unblock"] == "threatshare unblock life login.partner.example/account/reset"


def test_a_subdomain_under_a_wildcard_and_an_idn_form(
    pushed: Life, capsys: pytest.CaptureFixture[str]
) -> None:
    """A host under a pushed ``.domain`` and the Unicode form of a pushed punycode host are
    both found; the sender's message id is shown only as a keyed hash."""
    code, out = explain_json(pushed, "https://www.look-alike.example/x", capsys)
    assert code == 0
    [match] = out["matches"]
    assert match["entry"] == ".look-alike.example"
    assert match["source"] == ["malicious_domains"]
    assert match["evidence"][0]["verdict"] == "similar_internal_domain"
    message = match["evidence"][0]["message"]
    assert len(message) == 16 and "msg-1" not in json.dumps(out)
    code, out = explain_json(pushed, "BÜCHER.example", capsys)
    assert code == 0
    assert [m["entry"] for m in out["matches"]] == ["xn--bcher-kva.example"]


def test_nothing_blocks_an_unrelated_url(pushed: Life, capsys: pytest.CaptureFixture[str]) -> None:
    """An unrelated URL (even one sharing a parent domain) is not blocked: exit code 1."""
    code, out = explain_json(pushed, "https://partner.example/login", capsys)
    assert code == 1
    assert out["matches"] == []
    capsys.readouterr()
    assert cli.main(["--config", str(config_path(pushed)), "explain", "unrelated.example"]) == 1
    assert "Not blocked" in capsys.readouterr().out


def test_an_entry_staged_but_not_activated_is_not_active(life: Life) -> None:
    """Pushed but not yet activated, an entry blocks nothing yet: ``active`` is false until
    the tenant is activated (one GET /status per tenant)."""
    life.threats(["https://staged.example/p"])
    rt = Runtime(life.config, life.redis, policy=FAST, now=life.clock)
    try:
        assert sync_instance(rt, "life").state == "ok"
        before = explain(
            life.config,
            life.redis,
            "staged.example/p",
            pending=zia_pending_reader(rt),
        )
        assert [m.active for m in before.matches] == [False]
        activate_pending(rt)
        after = explain(
            life.config,
            life.redis,
            "staged.example/p",
            pending=zia_pending_reader(rt),
        )
        assert [m.active for m in after.matches] == [True]
    finally:
        rt.close()


def test_after_unblock_nothing_blocks_and_audit_says_who_and_why(
    pushed: Life, capsys: pytest.CaptureFixture[str]
) -> None:
    """After an unblock, explain finds nothing active and names the runtime allow list as the
    rule; audit shows the unblocked line with who and why, after the added one."""
    path = str(config_path(pushed))
    unblock = ["unblock", "life", ".look-alike.example", "--reason", "partner domain"]
    assert cli.main(["--config", path, *unblock]) == 0
    code, out = explain_json(pushed, "https://www.look-alike.example/x", capsys)
    assert code == 1 and out["matches"] == []
    rule = {"instance": "life", "entry": "www.look-alike.example/x", "rule": "unblocked"}
    assert rule in out["rules"]
    lines = audit_json(pushed, capsys, "--entry", ".look-alike.example")
    assert [line["action"] for line in lines] == ["added", "unblocked"]
    assert lines[1]["reason"] == "partner domain" and lines[1]["who"]
    assert set(lines[0]) == {"at", "instance", "entry", "action", "run_id", "who", "reason"}


def test_expiry_eviction_hand_removal_and_adoption_each_leave_a_line(
    life: Life, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every change a run makes to the category is in the audit trail with its action."""
    life.configure(expire_after="2d", max_entries=3, settings={"reconcile_every": "1h"})
    old = life.threats(["https://old.example/a"], ago=timedelta(hours=1))
    life.threats(["https://fp.example/a", "https://keep.example/a"])
    life.run()
    life.zia.admin_edit(CATEGORY, remove=["fp.example/a"], add=["adopt-me.example"])
    life.clock.advance(timedelta(hours=2))
    life.threats(["https://new1.example/a", "https://new2.example/a"])
    life.run()  # reconciles (hand removal, adoption), then evicts the least recently seen
    life.clock.advance(timedelta(days=3))
    life.run()  # everything left has expired
    actions: dict[str, list[str]] = {}
    for line in audit_json(life, capsys, "--instance", "life"):
        actions.setdefault(line["entry"], []).append(line["action"])
    assert actions["fp.example/a"] == ["added", "removed_by_hand"]
    assert actions["adopt-me.example"][0] == "adopted"
    assert "evicted" in actions[next(iter(old))]
    assert actions["new1.example/a"] == ["added", "expired"]
    assert actions["adopt-me.example"] == ["adopted", "expired"]


def test_a_recreated_category_is_in_the_trail(
    life: Life, capsys: pytest.CaptureFixture[str]
) -> None:
    """Entries pushed into a category recreated after a deletion by hand say so."""
    entries = life.threats(urls("r", 2))
    life.run()
    life.zia.admin_delete(CATEGORY)
    life.clock.advance(timedelta(days=1))
    assert life.run().state == "ok"
    recreated = {
        line["entry"] for line in audit_json(life, capsys) if line["action"] == "recreated"
    }
    assert recreated == entries


def test_audit_rejects_a_bad_duration(life: Life, capsys: pytest.CaptureFixture[str]) -> None:
    """A --since that is not a duration is a clear error (exit 2), not a traceback."""
    assert cli.main(["--config", str(config_path(life)), "audit", "--since", "yesterday"]) == 2
    assert "--since" in capsys.readouterr().err


def test_trail_has_every_action_word(life: Life) -> None:
    """The trail writes only the actions of its vocabulary (a typo in a caller fails)."""
    trail = AuditTrail(life.redis, timedelta(days=1))
    with pytest.raises(ValueError):
        trail.append("life", "purged", ["x.example"], at=life.clock.now, run_id="r")  # type: ignore[arg-type]
