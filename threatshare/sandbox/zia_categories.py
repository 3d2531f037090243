"""The URL categories of one emulated ZIA tenant: staged edits, activation, and the URL quota.

Edits are *staged*; :meth:`CategoryStore.activate` copies the staged URLs into the *active*
configuration (what ZIA would enforce). The quota counts unique URLs over every custom
category (``urls`` and ``dbCategorizedUrls``; a URL in two categories counts once), kept as a
reference count so an ADD or REMOVE of 10,000 URLs costs O(batch), not O(tenant).

Operations raise :class:`Refused` with ZIA's status and body when the tenant says no; one
invalid URL refuses the whole request.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from threatshare.sandbox.server import Response, json_response
from threatshare.sandbox.zia_urls import entry_problem

#: A few predefined categories, as GET /urlCategories lists them before the custom ones.
PREDEFINED = (
    ("OTHER_ADULT_MATERIAL", 1),
    ("FINANCE", 11),
    ("ANONYMIZER", 39),
    ("FILE_HOST", 43),
    ("WEB_SEARCH", 47),
    ("MISCELLANEOUS_OR_UNKNOWN", 63),
)
URL_LISTS = ("urls", "dbCategorizedUrls")
KEYWORD_LISTS = ("keywords", "keywordsRetainingParentCategory")
_OTHER_LISTS = ("ipRanges", "ipRangesRetainingParentCategory")
_NAME = re.compile(r"[A-Za-z0-9 _.()-]+")
_INVALID_BODY = "Request body is invalid."


class Refused(Exception):
    """The tenant refuses a request; ``response()`` is ZIA's answer."""

    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def response(self) -> Response:
        body = {"code": self.code} if self.code else {}
        body["message"] = self.message
        return json_response(self.status, body)


def invalid_input(message: str) -> Refused:
    return Refused(400, message, "INVALID_INPUT_ARGUMENT")


@dataclass
class Category:
    id: str
    val: int
    custom: bool
    name: str | None = None
    super_category: str | None = None
    description: str = ""
    type: str = "URL_CATEGORY"
    #: urls, dbCategorizedUrls, keywords...: insertion-ordered sets (dict keys).
    lists: dict[str, dict[str, None]] = field(default_factory=dict)
    scopes: list[Any] = field(default_factory=list)

    def items(self, key: str) -> dict[str, None]:
        return self.lists.setdefault(key, {})

    def as_json(self, *, counts_only: bool = False) -> dict[str, Any]:
        urls, db_urls = self.items("urls"), self.items("dbCategorizedUrls")
        out: dict[str, Any] = {"id": self.id}
        if self.name is not None:
            out["configuredName"] = self.name
        if self.super_category is not None:
            out["superCategory"] = self.super_category
        if not counts_only:
            out["urls"] = list(urls)
            out["dbCategorizedUrls"] = list(db_urls)
            for key in (*KEYWORD_LISTS, *_OTHER_LISTS):
                if self.lists.get(key):
                    out[key] = list(self.lists[key])
        # Real listings carry these counts and no ``urlKeywordCounts`` (recorded answers).
        out.update(
            customCategory=self.custom,
            editable=True,
            description=self.description,
            type=self.type,
            val=self.val,
            customUrlsCount=len(urls),
            urlsRetainingParentCategoryCount=len(db_urls),
            customIpRangesCount=len(self.items("ipRanges")),
            ipRangesRetainingParentCategoryCount=len(self.items("ipRangesRetainingParentCategory")),
        )
        if self.scopes:
            out["scopes"] = self.scopes
        if self.custom:
            out["urlType"] = "EXACT"
        return out


class CategoryStore:
    """Staged and active URL categories of one tenant. Not thread-safe: the emulator locks."""

    def __init__(
        self,
        *,
        url_quota: int,
        max_custom: int = 64,
        extra_invalid: Callable[[str], bool] = lambda url: False,
        refuse_empty: bool = False,
    ) -> None:
        self.url_quota = url_quota
        self.max_custom = max_custom
        #: Refuse to create a category with neither ``urls`` nor ``keywords``, as ZIA's
        #: documentation says it does (UCHOW); some tenants accept it.
        self.refuse_empty = refuse_empty
        self._extra_invalid = extra_invalid
        self._categories: dict[str, Category] = {
            name: Category(id=name, val=val, custom=False) for name, val in PREDEFINED
        }
        self._refs: Counter[str] = Counter()
        self._created = 0
        self._active: dict[str, frozenset[str]] = {}
        #: True when staged edits are waiting for an activation.
        self.pending = False

    # -- reads ----------------------------------------------------------------------------------

    def listing(
        self, *, custom_only: bool, counts_only: bool, kind: str | None
    ) -> list[dict[str, Any]]:
        return [
            category.as_json(counts_only=counts_only)
            for category in self._categories.values()
            if (category.custom or not custom_only) and kind in (None, "ALL", category.type)
        ]

    def lite(self) -> list[dict[str, Any]]:
        out = []
        for category in self._categories.values():
            entry: dict[str, Any] = {"id": category.id}
            if category.name is not None:
                entry["configuredName"] = category.name
            entry.update(customCategory=category.custom, type=category.type, val=category.val)
            out.append(entry)
        return out

    def get(self, category_id: str) -> Category:
        category = self._categories.get(category_id)
        if category is None:
            raise Refused(404, f"Category {category_id} not found", "RESOURCE_NOT_FOUND")
        return category

    def quota(self) -> dict[str, int]:
        used = len(self._refs)
        return {"uniqueUrlsProvisioned": used, "remainingUrlsQuota": max(0, self.url_quota - used)}

    def by_name(self, name: str) -> Category | None:
        return next((c for c in self._categories.values() if c.custom and c.name == name), None)

    def custom(self) -> list[Category]:
        return [c for c in self._categories.values() if c.custom]

    def active_urls(self, name: str) -> set[str]:
        return set(self._active.get(name, ()))

    # -- writes ---------------------------------------------------------------------------------

    def create(self, body: Any) -> Category:
        body = _object(body)
        name = _string(body, "configuredName")
        if not name:
            raise invalid_input("configuredName is required for a custom category")
        self._check_name(name, None)
        super_category = _string(body, "superCategory")
        if not super_category:
            raise invalid_input("superCategory is required")
        kind = _string(body, "type") or "URL_CATEGORY"
        if kind not in ("URL_CATEGORY", "TLD_CATEGORY"):
            raise invalid_input(f"Invalid category type {kind}")
        _flag(body, "customCategory")
        if len(self.custom()) >= self.max_custom:
            raise invalid_input(
                f"An organization can have a maximum of {self.max_custom} custom URL categories."
            )
        lists = self._lists_of(body, keep=None)
        if self.refuse_empty and not any(lists.get(k) for k in (*URL_LISTS, *KEYWORD_LISTS)):
            raise invalid_input("A custom category needs at least one URL or keyword")
        self._check_quota(lists)
        self._created += 1
        category = Category(
            id=f"CUSTOM_{self._created:02d}",
            val=127 + self._created,
            custom=True,
            name=name,
            super_category=super_category,
            description=_string(body, "description") or "",
            type=kind,
            lists=lists,
            scopes=_scopes(body),
        )
        self._categories[category.id] = category
        self._attach(category)
        self.pending = True
        return category

    def replace(self, category_id: str, body: Any) -> Category:
        """Full replace: list attributes left out are cleared, except keywords (kept)."""
        category = self._editable(category_id)
        body = _object(body)
        name = _string(body, "configuredName") or category.name
        self._check_name(name or "", category.id)
        super_category = _string(body, "superCategory") or category.super_category
        description = _string(body, "description")
        _flag(body, "customCategory")
        lists = self._lists_of(body, keep=category)
        self._detach(category)
        try:
            self._check_quota(lists)
        except Refused:
            self._attach(category)
            raise
        category.name, category.super_category, category.lists = name, super_category, lists
        if description is not None:
            category.description = description
        if "scopes" in body:
            category.scopes = _scopes(body)
        self._attach(category)
        self.pending = True
        return category

    def add(self, category_id: str, body: Any) -> Category:
        category, changes = self._incremental(category_id, body)
        new_urls = {
            url for key in URL_LISTS for url in changes.get(key, ()) if url not in self._refs
        }
        if len(self._refs) + len(new_urls) > self.url_quota:
            raise self._quota_refusal()
        for key, values in changes.items():
            items = category.items(key)
            for value in values:
                if value not in items:
                    items[value] = None
                    if key in URL_LISTS:
                        self._refs[value] += 1
        self.pending = True
        return category

    def remove(self, category_id: str, body: Any) -> Category:
        category, changes = self._incremental(category_id, body, validate=False)
        for key, values in changes.items():
            items = category.items(key)
            for value in values:
                if value in items:
                    del items[value]
                    if key in URL_LISTS:
                        self._release(value)
        self.pending = True
        return category

    def delete(self, category_id: str) -> None:
        category = self.get(category_id)
        if not category.custom:
            raise Refused(400, "Predefined categories cannot be deleted", "INVALID_OPERATION")
        self._detach(category)
        del self._categories[category_id]
        self.pending = True

    def activate(self) -> None:
        self._active = {c.name or c.id: frozenset(c.items("urls")) for c in self.custom()}
        self.pending = False

    # -- helpers --------------------------------------------------------------------------------

    def _editable(self, category_id: str) -> Category:
        category = self.get(category_id)
        if not category.custom:
            raise Refused(400, "Predefined categories cannot be edited", "INVALID_OPERATION")
        return category

    def _incremental(
        self, category_id: str, body: Any, *, validate: bool = True
    ) -> tuple[Category, dict[str, list[str]]]:
        category = self._editable(category_id)
        body = _object(body)
        if not _string(body, "configuredName"):
            raise invalid_input("configuredName is required")
        _string(body, "superCategory")
        _flag(body, "customCategory")
        changes = {}
        for key in (*URL_LISTS, *KEYWORD_LISTS):
            values = _strings(body, key)
            if values is not None:
                if validate and key in URL_LISTS:
                    self._validate(values)
                changes[key] = values
        return category, changes

    def _lists_of(self, body: dict[str, Any], *, keep: Category | None) -> dict[str, dict]:
        lists: dict[str, dict[str, None]] = {}
        for key in (*URL_LISTS, *KEYWORD_LISTS, *_OTHER_LISTS):
            values = _strings(body, key)
            if values is None and keep is not None and key in KEYWORD_LISTS:
                lists[key] = dict(keep.items(key))
                continue
            if values and key in URL_LISTS:
                self._validate(values)
            lists[key] = dict.fromkeys(values or ())
        return lists

    def _validate(self, urls: Iterable[str]) -> None:
        for url in urls:
            problem = entry_problem(url)
            if problem is None and self._extra_invalid(url):
                problem = "refused by the tenant"
            if problem:
                raise invalid_input(f"Invalid URL {url}: {problem}")

    def _check_name(self, name: str, own_id: str | None) -> None:
        if not _NAME.fullmatch(name):
            raise invalid_input(f"Invalid category name {name}")
        other = self.by_name(name)
        if other is not None and other.id != own_id:
            # A duplicate is a 409 in ZIA, not a 400 (recorded answers).
            raise Refused(409, f"Category name {name} already exists", "DUPLICATE_ITEM")

    def _check_quota(self, lists: dict[str, dict[str, None]]) -> None:
        new = {url for key in URL_LISTS for url in lists.get(key, ()) if url not in self._refs}
        if len(self._refs) + len(new) > self.url_quota:
            raise self._quota_refusal()

    def _quota_refusal(self) -> Refused:
        return invalid_input(
            f"An organization can have a maximum of {self.url_quota} custom URLs. "
            f"Currently {len(self._refs)} are already provisioned for this organization."
        )

    def _attach(self, category: Category) -> None:
        for key in URL_LISTS:
            self._refs.update(category.items(key).keys())

    def _detach(self, category: Category) -> None:
        for key in URL_LISTS:
            for url in category.items(key):
                self._release(url)

    def _release(self, url: str) -> None:
        self._refs[url] -= 1
        if self._refs[url] <= 0:
            del self._refs[url]


# -- body parsing: a wrongly typed field is ZIA's "Request body is invalid." ---------------------


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise Refused(400, _INVALID_BODY)
    return body


def _string(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise Refused(400, _INVALID_BODY)
    return value


def _flag(body: dict[str, Any], key: str) -> bool | None:
    value = body.get(key)
    if value is not None and not isinstance(value, bool):
        raise Refused(400, _INVALID_BODY)
    return value


def _strings(body: dict[str, Any], key: str) -> list[str] | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise Refused(400, _INVALID_BODY)
    return value


def _scopes(body: dict[str, Any]) -> list[Any]:
    value = body.get("scopes")
    if value is None:
        return []
    if not isinstance(value, list):
        raise Refused(400, _INVALID_BODY)
    return value
