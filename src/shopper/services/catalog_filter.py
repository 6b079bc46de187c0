"""Only catalog items are recommended: behaviour on an item the catalog does not know of
(a made-up or hostile id, a typo, an item not listed yet) is still counted, so the item
ranks as soon as the catalog lists it, but no list carries it before then. The state keeps
those counts for the `max_unlisted_items` such items seen last (`StateChanges.unlisted`)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from cachetools import LRUCache

from shopper.ports.processor_state import ProcessorState

# How far past the top `n` a popular read looks for catalog items, when items the catalog
# does not know of crowd the top: n, then 4n, then 16n rows at most.
_POPULAR_READS = 3
_POPULAR_GROWTH = 4
KNOWN_REMEMBERED = 100_000  # catalog items remembered as known (~13 MB, ids aside)


class CatalogFilter:
    """Which items the catalog knows of, asked of the processor state once per micro-batch
    (one read for all the batch's candidates). Catalog items are never removed, so an item
    once known is remembered (the `remembered` most recently asked about: a bound on
    memory, not on correctness); unknown ones are asked again each time, so a newly
    listed item is seen at once."""

    def __init__(self, state: ProcessorState, remembered: int = KNOWN_REMEMBERED) -> None:
        self._state = state
        self._known: LRUCache[str, bool] = LRUCache(maxsize=remembered)

    def unknown_among(self, item_ids: Iterable[str]) -> set[str]:
        """The items of `item_ids` that the catalog does not know of."""
        known = self._known
        # A lookup (not `in`) marks an item as used, so the busiest stay remembered.
        asked = {i for i in item_ids if known.get(i) is None}
        if not asked:
            return set()
        found = self._state.items(asked).keys()
        for item in found:
            known[item] = True
        return asked.difference(found)

    def known_only(self, rows: Sequence[tuple[str, float]]) -> list[tuple[str, float]]:
        """`rows` (item, score) without the items the catalog does not know of."""
        unknown = self.unknown_among(i for i, _ in rows)
        return [row for row in rows if row[0] not in unknown] if unknown else list(rows)

    def popular(self, segment: str, n: int) -> list[tuple[str, float]]:
        """The top `n` catalog items of a segment by decayed interest, best first. Reads
        further down the segment while unknown items crowd the top, a bounded number of
        times (`_POPULAR_READS`): past that the list is shorter, never poisoned."""
        want = n
        known: list[tuple[str, float]] = []
        for _ in range(_POPULAR_READS):
            rows = self._state.popular(segment, want)
            known = self.known_only(rows)
            if len(known) >= n or len(rows) < want:
                break
            want *= _POPULAR_GROWTH
        return known[:n]
