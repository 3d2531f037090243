"""``threatshare explain`` and ``threatshare audit`` for people: plain text a help desk can read
aloud (docs/design.md#provenance-and-audit). The JSON forms are the records' own ``to_json``."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime

from threatshare.ops.explain import ACTIVE_TEXT, Explanation, expires_text
from threatshare.state.audit import AuditLine

_RULES = {
    "allow": "on the instance's allow list",
    "unblocked": "on the runtime allow list (threatshare unblock)",
}


def render_explanation(result: Explanation, now: datetime) -> str:
    lines = [f"{result.input}  (entry form: {result.entry_form})"]
    if not result.matches:
        lines.append("Not blocked by any threatshare category.")
    for match in result.matches:
        lines += [
            "",
            f"Blocked by {match.entry!r} in {match.category!r} (instance {match.instance})",
            f"  source:      {', '.join(match.source) or 'unknown (recorded before provenance)'}",
            f"  first seen:  {match.first_seen or 'unknown'}",
            f"  last seen:   {match.last_seen or 'unknown'}",
            f"  sightings:   {match.sightings}",
        ]
        for ev in match.evidence:
            message = f", message {ev['message']}" if ev["message"] else ""
            lines.append(f"    {ev['at']}: {ev['verdict'] or 'no verdict'}{message}")
        lines += [
            f"  expires:     {expires_text(match, now)}",
            f"  active:      {ACTIVE_TEXT[match.active]}",
            f"  to lift it:  {match.unblock}",
        ]
    if result.rules:
        lines += ["", "Rules that keep it from being pushed again:"]
        for rule in result.rules:
            what = _RULES.get(rule["rule"], rule["rule"].replace("_", " "))
            lines.append(f"  {rule['instance']}: {rule['entry']} is {what}")
    return "\n".join(lines)


def render_audit(lines: Iterable[AuditLine], *, as_json: bool) -> Iterable[str]:
    for line in lines:
        if as_json:
            yield json.dumps(line.to_json(), sort_keys=True)
            continue
        extra = ""
        if line.who or line.reason:
            extra = f"  by {line.who or '?'}: {line.reason or 'no reason given'}"
        at = line.at.strftime("%Y-%m-%d %H:%M:%S")
        yield f"{at}  {line.instance:<16} {line.action:<15} {line.entry}  [{line.run_id}]{extra}"
