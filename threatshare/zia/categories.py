"""The category calls of the ZIA client (docs/design.md#pushing-to-zia, docs/design.md#expiry): find
a custom category by name, create it (empty where the tenant allows, or holding its first batch of
entries), read one with its URLs and description, and list the sizes of all of them.

:class:`CategoryCalls` is a base of :class:`~threatshare.zia.client.ZiaClient`, which supplies
the one way of making a call (rate limit, retries, errors) that every method here uses.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from threatshare.errors import CategoryRefused, Forbidden, UpstreamUnavailable
from threatshare.zia.bisect import push_isolating_refused
from threatshare.zia.errors import (
    EmptyCategoryRefused,
    ZiaRejected,
    refuses_an_entry,
    refuses_empty,
)

log = structlog.get_logger(__name__)

ADD = "ADD_TO_LIST"
REMOVE = "REMOVE_FROM_LIST"


@dataclass(frozen=True)
class CategoryContent:
    """One category as ``GET /urlCategories/{id}`` shows it: what reconciliation compares."""

    id: str
    name: str
    description: str
    urls: list[str]


def category_description(instance: str, description: str = "") -> str:
    """The description of an instance's category: it names threatshare and the instance
    (docs/design.md#pushing-to-zia), so a ZIA admin knows where the entries come from and what
    manages them."""
    head = f"Managed by threatshare, instance {instance}: threats shared from Mimecast."
    return f"{head} {description}".strip()


def names_us(description: str, instance: str) -> bool:
    """Whether a category's description says threatshare manages it for ``instance`` (the
    wording :func:`category_description` writes)."""
    # Up to and with the colon after the name: instance "url" is not instance "urls".
    return category_description(instance).split(":", 1)[0] + ":" in description


def url_count(category: dict[str, Any]) -> int | None:
    """How many URLs a listed category holds. Real listings carry ``customUrlsCount`` and
    ``urlsRetainingParentCategoryCount``; ``urlKeywordCounts`` is read where it appears."""
    custom = category.get("customUrlsCount")
    if _count(custom):
        retained = category.get("urlsRetainingParentCategoryCount")
        return int(custom) + (int(retained) if _count(retained) else 0)
    counts = category.get("urlKeywordCounts")
    total = counts.get("totalUrlCount") if isinstance(counts, dict) else None
    return int(total) if _count(total) else None


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def instance_named(description: str) -> str | None:
    """The instance a category's description says threatshare manages it for (the wording
    :func:`category_description` writes), or None."""
    head = category_description("\0").split("\0", 1)[0]
    start = description.find(head)
    if start < 0:
        return None
    name, colon, _ = description[start + len(head) :].partition(":")
    return name if colon and name else None


class CategoryCalls:
    """Finding, creating and reading the instance's custom category."""

    def _call(self, method: str, path: str, **options: Any) -> Any:
        raise NotImplementedError  # the client's one way of calling ZIA (rate limit, retries)

    def _put(self, category_id: str, name: str, action: str, urls: list[str]) -> None:
        raise NotImplementedError  # the client's ADD/REMOVE

    def _custom_categories(self) -> list[dict[str, Any]]:
        answer = self._call(
            "GET",
            "/urlCategories",
            params={"customOnly": "true", "includeOnlyUrlKeywordCounts": "true"},
        )
        if not isinstance(answer, list):
            raise UpstreamUnavailable("ZIA GET /urlCategories: answer is not a list")
        return [c for c in answer if isinstance(c, dict)]

    def _find(self, name: str) -> str | None:
        categories = self._custom_categories()
        for same in (lambda n: n == name, lambda n: n.casefold() == name.casefold()):
            for category in categories:
                configured = category.get("configuredName")
                if isinstance(configured, str) and same(configured) and category.get("id"):
                    return str(category["id"])
        return None

    def _post_category(self, name: str, description: str, urls: list[str]) -> str | None:
        """``POST /urlCategories`` holding ``urls``; the new id, or ``None`` when ZIA says the
        name exists (another worker won a race). A refusal that blames an entry propagates as
        :class:`ZiaRejected`, so a caller can bisect it like an add."""
        body: dict[str, Any] = {
            "configuredName": name,
            "superCategory": "USER_DEFINED",
            "customCategory": True,
            "type": "URL_CATEGORY",
            "description": description,
            "urls": urls,
        }
        try:
            created = self._call("POST", "/urlCategories", body=body)
        except ZiaRejected as exc:
            if exc.zia_code == "DUPLICATE_ITEM":
                return None
            if urls and refuses_an_entry(exc, urls):
                raise
            if not urls and refuses_empty(exc):
                raise EmptyCategoryRefused(name) from None
            raise CategoryRefused(f"ZIA refused to create category {name!r}: {exc}") from None
        except Forbidden as exc:
            raise CategoryRefused(f"ZIA refused to create category {name!r}: {exc}") from None
        if not isinstance(created, dict) or not created.get("id"):
            raise UpstreamUnavailable("ZIA POST /urlCategories: answer has no id")
        log.info("zia_category_created", category=name, urls=len(urls))
        return str(created["id"])

    def category_sizes(self) -> list[tuple[str, int]]:
        """Every custom category of the tenant with its number of URLs, largest first (one
        GET of counts, not of URLs): the shares of the quota warning (docs/design.md#alerts)."""
        sizes = []
        for category in self._custom_categories():
            total = url_count(category)
            name = category.get("configuredName")
            if total is not None and isinstance(name, str):
                sizes.append((name, total))
        return sorted(sizes, key=lambda item: (-item[1], item[0]))

    def managed_categories(self) -> list[tuple[str, str]]:
        """Every custom category whose description says threatshare manages it, with the
        instance it names, by name (one GET of counts, not of URLs)."""
        managed = []
        for category in self._custom_categories():
            name, description = category.get("configuredName"), category.get("description")
            if isinstance(name, str) and isinstance(description, str):
                instance = instance_named(description)
                if instance is not None:
                    managed.append((name, instance))
        return sorted(managed)

    def find_category(self, name: str) -> str | None:
        """The id of the custom category ``name`` (exact name first, then any case), or None."""
        return self._find(name)

    def find_or_create_category(
        self, name: str, description: str, known_id: str | None = None
    ) -> str:
        """The id of the custom category ``name``: ``known_id`` when it still is that category,
        else the one found by name, else a new, empty one (:class:`EmptyCategoryRefused` when
        the tenant wants a first entry: see :meth:`create_with_entries`)."""
        if known_id:
            current = self._call("GET", f"/urlCategories/{known_id}", missing_ok=True)
            if isinstance(current, dict):
                configured = current.get("configuredName")
                if isinstance(configured, str) and configured.casefold() == name.casefold():
                    return known_id
        found = self._find(name)
        if found:
            return found
        created = self._post_category(name, description, [])
        return created or self._found_after_race(name)

    def _found_after_race(self, name: str) -> str:
        # Another worker created it between our look-up and our create: look once more.
        found = self._find(name)
        if found:
            return found
        raise CategoryRefused(f"ZIA says category {name!r} exists but it is not a custom one")

    def create_with_entries(
        self,
        name: str,
        description: str,
        batch: list[str],
        on_batch: Callable[[list[str]], None],
        refused: dict[str, str],
    ) -> str | None:
        """Create the category holding its first ``batch`` of entries
        (docs/design.md#pushing-to-zia: one call, never a placeholder). An entry ZIA refuses is
        searched for as in an add: the first part that lands creates the category, the rest is added
        to it. Returns the id, or None when ZIA refused every entry (nothing was created)."""
        created: list[str] = []

        def put(urls: list[str]) -> None:
            if created:
                self._put(created[0], name, ADD, urls)
                return
            new_id = self._post_category(name, description, urls)
            if new_id is None:  # a rival created it meanwhile: add to theirs
                new_id = self._found_after_race(name)
                self._put(new_id, name, ADD, urls)
            created.append(new_id)

        push_isolating_refused(put, list(dict.fromkeys(batch)), on_batch, refused)
        return created[0] if created else None

    def read_category(self, category_id: str) -> CategoryContent | None:
        """The category with its URLs and description (one GET); None when it is gone."""
        answer = self._call("GET", f"/urlCategories/{category_id}", missing_ok=True)
        if answer is None:
            return None
        if not isinstance(answer, dict):
            raise UpstreamUnavailable("ZIA GET /urlCategories/{id}: answer is not an object")
        urls = answer.get("urls")
        if urls is None:
            urls = []
        if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
            raise UpstreamUnavailable("ZIA GET /urlCategories/{id}: urls is not a list of text")
        name, description = answer.get("configuredName"), answer.get("description")
        return CategoryContent(
            id=str(answer.get("id") or category_id),
            name=name if isinstance(name, str) else "",
            description=description if isinstance(description, str) else "",
            urls=urls,
        )
