"""``/explain`` and ``/api/explain?url=``: the "why is this blocked?" form of the operations
endpoint (docs/design.md#provenance-and-audit).

The endpoint is read-only and serves anyone who can reach it, so it never calls ZIA: whether an
entry is enforced now is read from the activation marks threatshare keeps in Redis (a tenant
with a mark has changes staged and not activated), not from ``GET /status``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

import redis
from jinja2 import Environment, PackageLoader, select_autoescape

from threatshare.config import Config
from threatshare.ops.explain import ACTIVE_TEXT, Explanation, NotExplainable, explain
from threatshare.state.activation_marks import ActivationMarks

#: Longest input the form takes: a URL entry is at most 1,024 characters once shaped.
MAX_INPUT = 2048


def query_of(environ: dict[str, Any]) -> str:
    """The ``url`` parameter of a request ("" when absent)."""
    values = parse_qs(str(environ.get("QUERY_STRING") or ""), max_num_fields=4).get("url")
    return values[0] if values else ""


def explain_query(config: Config, client: redis.Redis, query: str) -> Explanation:
    """The explanation of ``query``; NotExplainable for an empty, over-long or unusable one."""
    if len(query) > MAX_INPUT:
        raise NotExplainable(f"longer than {MAX_INPUT} characters")
    marks = ActivationMarks(client)

    def pending(zia: str) -> bool | None:
        return marks.unactivated_generation(config.zia[zia].tenant_id) is not None

    return explain(config, client, query, pending=pending)


class ExplainPage:
    """The form and its answer, rendered on the server (no script)."""

    def __init__(self) -> None:
        env = Environment(
            loader=PackageLoader("threatshare.ops", "templates"),
            autoescape=select_autoescape(["html"]),
        )
        self._template = env.get_template("explain.html")

    def render(self, query: str, result: Explanation | None, error: str | None) -> str:
        return self._template.render(
            query=query[:MAX_INPUT],
            result=result.to_json() if result else None,
            error=error,
            max_input=MAX_INPUT,
            active_text=ACTIVE_TEXT,
        )
