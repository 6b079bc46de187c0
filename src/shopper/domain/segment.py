"""Popularity segments: who counts as 'people like this shopper' when nothing else is known.

Segments come from a fixed set of dimensions (country, device) and values (`SegmentPolicy`):
a value outside the set is folded into `<dimension>:other`, so no client can create
segments (each one a counter table and a popular list) by making values up.
"""

from __future__ import annotations

from dataclasses import dataclass, field

GLOBAL_SEGMENT = "global"
OTHER = "other"
COUNTRY_OTHER = f"country:{OTHER}"
DEVICE_OTHER = f"device:{OTHER}"

# ISO 3166-1 alpha-2: every country code there is, and nothing a client can add to.
ISO_COUNTRIES = frozenset(
    """ad ae af ag ai al am ao aq ar as at au aw ax az ba bb bd be bf bg bh bi bj bl bm bn bo
    bq br bs bt bv bw by bz ca cc cd cf cg ch ci ck cl cm cn co cr cu cv cw cx cy cz de dj dk
    dm do dz ec ee eg eh er es et fi fj fk fm fo fr ga gb gd ge gf gg gh gi gl gm gn gp gq gr
    gs gt gu gw gy hk hm hn hr ht hu id ie il im in io iq ir is it je jm jo jp ke kg kh ki km
    kn kp kr kw ky kz la lb lc li lk lr ls lt lu lv ly ma mc md me mf mg mh mk ml mm mn mo mp
    mq mr ms mt mu mv mw mx my mz na nc ne nf ng ni nl no np nr nu nz om pa pe pf pg ph pk pl
    pm pn pr ps pt pw py qa re ro rs ru rw sa sb sc sd se sg sh si sj sk sl sm sn so sr ss st
    sv sx sy sz tc td tf tg th tj tk tl tm tn to tr tt tv tw tz ua ug um us uy uz va vc ve vg
    vi vn vu wf ws ye yt za zm zw""".split()  # noqa: SIM905 (a table reads better as text)
)
DEVICE_KINDS = frozenset({"desktop", "mobile", "tablet", "app"})


@dataclass(frozen=True, slots=True)
class SegmentPolicy:
    """The segment values counted on their own, per dimension (lower case); any other
    value a shopper states counts as `other`."""

    countries: frozenset[str] = ISO_COUNTRIES
    devices: frozenset[str] = DEVICE_KINDS
    # value -> segment name, built once: the page asks for a shopper's segments each read.
    _names: dict[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        names = {f"c{c}": f"country:{c}" for c in self.countries}
        names.update({f"d{d}": f"device:{d}" for d in self.devices})
        object.__setattr__(self, "_names", names)

    @classmethod
    def of(cls, countries: list[str] | None, devices: list[str] | None) -> SegmentPolicy:
        """From settings: None keeps a dimension's default set."""
        return cls(
            frozenset(c.lower() for c in countries) if countries is not None else ISO_COUNTRIES,
            frozenset(d.lower() for d in devices) if devices is not None else DEVICE_KINDS,
        )

    def segments(self, country: str | None, device: str | None) -> list[str]:
        """Segments from most specific to global; the page falls back along this order."""
        names, out = self._names, []
        if country:
            out.append(names.get("c" + country.lower(), COUNTRY_OTHER))
        if device:
            out.append(names.get("d" + device.lower(), DEVICE_OTHER))
        out.append(GLOBAL_SEGMENT)
        return out

    def makes(self, segment: str) -> bool:
        """Whether `segments` can name this segment (so a page may read its list)."""
        dimension, _, value = segment.partition(":")
        if dimension == "country":
            return value == OTHER or value in self.countries
        if dimension == "device":
            return value == OTHER or value in self.devices
        return segment == GLOBAL_SEGMENT


DEFAULT_SEGMENTS = SegmentPolicy()


def popularity_segments(
    country: str | None, device: str | None, policy: SegmentPolicy = DEFAULT_SEGMENTS
) -> list[str]:
    """Segments from most specific to global (`policy.segments`)."""
    return policy.segments(country, device)


HOUR_BUCKETS = ((0, 6), (6, 12), (12, 18), (18, 24))


def hour_segment(ts: float) -> str:
    """The hour-of-day segment of a moment (UTC): `hour:0-5`, `hour:6-11`, ..."""
    hour = int(ts // 3600) % 24
    start, end = next(b for b in HOUR_BUCKETS if b[0] <= hour < b[1])
    return f"hour:{start}-{end - 1}"
