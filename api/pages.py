"""Keyset pages as plain JSON lists, the next page's URL in a ``Link`` header (RFC 8288)."""

from __future__ import annotations

from typing import TypeVar

from fastapi import Request, Response

from switchboard.kit.pagination import Page

T = TypeVar("T")


def link_page(page: Page[T], request: Request, response: Response) -> list[T]:
    if page.next_cursor is not None:
        following = request.url.include_query_params(cursor=page.next_cursor)
        response.headers["Link"] = f'<{following.path}?{following.query}>; rel="next"'
    return page.items
