"""The page route's own query parsing reads what Starlette reads."""

from __future__ import annotations

from urllib.parse import parse_qsl

import pytest

from shopper.api.page_route import page_request, query_params


@pytest.mark.parametrize(
    "query",
    [
        b"",
        b"session_id=s1&k=5",
        b"k=1&k=2",  # the last wins
        b"user_id&session_id=",  # blank values kept
        b"&&user_id=u1&",
        b"user_id=a=b",
        b"user_id=%C3%A4pfel&device=mobile+app",  # escaped
        b"user_id=\xc3\xa4",  # raw bytes, read as latin-1
        b"=v",
        b"user_id=a;k=2",  # ';' is no separator
    ],
)
def test_query_params_match_starlettes_reading(query: bytes) -> None:
    assert query_params(query) == dict(parse_qsl(query.decode("latin-1"), keep_blank_values=True))


@pytest.mark.parametrize(
    "query", [b"k=0", b"k=101", b"k=-1", b"k=1e3", b"k=", b"k=%35", b"k=9" * 9]
)
def test_a_k_the_route_does_not_take_is_left_to_the_framework(query: bytes) -> None:
    request = page_request(query, 10, 100)
    escaped_five = query == b"k=%35"
    assert (request is not None and request.k == 5) if escaped_five else request is None


def test_a_well_formed_page_request() -> None:
    request = page_request(b"session_id=s1&k=7&country=DE&impression=false", 10, 100)
    assert request is not None
    assert (request.session_id, request.k, request.country, request.shown) == ("s1", 7, "DE", False)
    assert page_request(b"user_id=u1", 10, 100).k == 10  # type: ignore[union-attr]
