"""Finding the entries ZIA refuses in a batch it refused as a whole.

One invalid URL makes ZIA refuse a whole ADD_TO_LIST (docs/design.md#limits-of-zia), so a refused
batch must be searched for its bad entries: they are rejected (docs/design.md#entries, reason
``refused_by_zia``) and the rest is pushed. Two strategies, cheapest first:

- ZIA's message usually names the URL it refused: that entry is sent alone (if ZIA refuses it
  again it is rejected; if it lands, ZIA named a good entry and names are trusted no further)
  and the rest is sent at once. One bad entry costs two extra calls.
- Otherwise the batch is halved recursively, which isolates one bad entry in a batch of ``n``
  in at most 2·⌈log2 n⌉ extra calls (20 for 1,000).

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
) -> None:
    """``put(batch)``; when ZIA refuses it because of entries, find them (see the module).

    Every part ZIA accepted goes to ``done``, in the order it landed; every refused entry is
    added to ``refused`` with :data:`REFUSED_BY_ZIA`."""
    try:
        put(batch)
    except ZiaRejected as exc:
        if not refuses_an_entry(exc, batch):
            raise
        refusal = exc
    else:
        done(batch)
        return
    if len(batch) == 1:
        refused[batch[0]] = REFUSED_BY_ZIA
        return
    suspect = named_entry(refusal, batch) if trust_names else None
    if suspect is not None:
        before = len(refused)
        push_isolating_refused(put, [suspect], done, refused)
        named_right = len(refused) > before
        rest = [entry for entry in batch if entry != suspect]
        push_isolating_refused(put, rest, done, refused, trust_names=named_right)
        return
    half = (len(batch) + 1) // 2
    push_isolating_refused(put, batch[:half], done, refused, trust_names=trust_names)
    push_isolating_refused(put, batch[half:], done, refused, trust_names=trust_names)
