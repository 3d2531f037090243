"""Finding the entries ZIA refuses in a batch it refused as a whole.

One invalid URL makes ZIA refuse a whole ADD_TO_LIST (docs/design.md#limits-of-zia), so a refused
batch must be searched for its bad entries: they are rejected (docs/design.md#entries, reason
``refused_by_zia``) and the rest is pushed. Two strategies, cheapest first:

- ZIA's message usually names the URL it refused: that entry is sent alone (if ZIA refuses it
  again it is rejected; if it lands, ZIA named a good entry and names are trusted no further)
  and the rest is sent at once. One bad entry costs two extra calls.
- Otherwise the batch is halved recursively, which isolates one bad entry in a batch of ``n``
  in at most 2·⌈log2 n⌉ extra calls (20 for 1,000).
- A refusal that names no entry and that both halves of the first split get again, word for
  word (ZIA's ``name cannot be null``), is about the request, not an entry: it ends the search
  after those two extra calls as a permanent ``zia_request``, rather than costing a call per
  entry (thousands for a full batch, against ZIA's 400 PUTs an hour).

Only refusals that blame an entry are searched; any other error propagates unchanged.
"""

from __future__ import annotations

from collections.abc import Callable

from threatshare.zia.errors import ZiaRejected, named_entry, refuses_an_entry

#: Why an entry ZIA refused is rejected (docs/design.md#entries counts rejections by reason).
REFUSED_BY_ZIA = "refused_by_zia"

Put = Callable[[list[str]], None]
Done = Callable[[list[str]], None]


def push_isolating_refused(
    put: Put,
    batch: list[str],
    done: Done,
    refused: dict[str, str],
    *,
    trust_names: bool = True,
    first_split: bool = True,
) -> None:
    """``put(batch)``; when ZIA refuses it because of entries, find them (see the module).

    Every part ZIA accepted goes to ``done``, in the order it landed; every refused entry is
    added to ``refused`` with :data:`REFUSED_BY_ZIA`. A refusal that names no entry and that
    both halves of the first split get again is not about an entry: it is raised (a permanent
    ``zia_request``) after those two PUTs, instead of one PUT per entry."""
    refusal = _refusal(put, batch)
    if refusal is None:
        done(batch)
        return
    if len(batch) == 1:
        refused[batch[0]] = REFUSED_BY_ZIA
        return
    suspect = named_entry(refusal, batch) if trust_names else None
    if suspect is not None:
        before = len(refused)
        push_isolating_refused(put, [suspect], done, refused, first_split=False)
        named_right = len(refused) > before
        rest = [entry for entry in batch if entry != suspect]
        push_isolating_refused(put, rest, done, refused, trust_names=named_right, first_split=False)
        return
    half = (len(batch) + 1) // 2
    first, second = batch[:half], batch[half:]
    if first_split:
        answer = _refusal(put, first)
        if answer is not None and same_answer(answer, refusal):
            again = _refusal(put, second)
            if again is not None and same_answer(again, refusal):
                raise not_about_an_entry(refusal)
            if again is None:
                done(second)
            _isolate_refused(put, first, answer, done, refused, trust_names)
            if again is not None:
                _isolate_refused(put, second, again, done, refused, trust_names)
            return
        if answer is None:
            done(first)
        else:
            _isolate_refused(put, first, answer, done, refused, trust_names)
    else:
        push_isolating_refused(
            put, first, done, refused, trust_names=trust_names, first_split=False
        )
    push_isolating_refused(put, second, done, refused, trust_names=trust_names, first_split=False)


def _refusal(put: Put, batch: list[str]) -> ZiaRejected | None:
    """``put(batch)``: None when ZIA accepted it, its refusal when that blames an entry; any
    other error propagates."""
    try:
        put(batch)
    except ZiaRejected as exc:
        if not refuses_an_entry(exc, batch):
            raise
        return exc
    return None


def _isolate_refused(
    put: Put,
    batch: list[str],
    refusal: ZiaRejected,
    done: Done,
    refused: dict[str, str],
    trust_names: bool,
) -> None:
    """Search ``batch``, which ZIA just refused with ``refusal``, without sending it again."""
    if len(batch) == 1:
        refused[batch[0]] = REFUSED_BY_ZIA
        return
    half = (len(batch) + 1) // 2
    for part in (batch[:half], batch[half:]):
        push_isolating_refused(put, part, done, refused, trust_names=trust_names, first_split=False)


def same_answer(one: ZiaRejected, other: ZiaRejected) -> bool:
    """Whether two refusals say the same thing (status, ZIA's code and message)."""
    return (one.status, one.zia_code, one.detail) == (other.status, other.zia_code, other.detail)


def not_about_an_entry(refusal: ZiaRejected) -> ZiaRejected:
    """The permanent error of a refusal that no entry explains (docs/design.md#pushing-to-zia)."""
    return ZiaRejected(
        f"{refusal.message} (not about an entry: both halves of the batch got the same answer)",
        status=refusal.status,
        zia_code=refusal.zia_code,
        detail=refusal.detail,
    )
