from collections.abc import Iterable
from typing import Any

from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.parsers import BaseParser
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request


class FirstParserAndRenderer(BaseContentNegotiation):
    """Use the view's first parser and renderer whatever the headers say.

    The API reads and answers JSON only, as the handler it replaces did: a client sending
    `Accept: text/html` still gets its JSON rather than a 406, and no header parsing is
    spent on every call of a latency-sensitive endpoint.
    """

    def select_parser(self, request: Request, parsers: Iterable[BaseParser]) -> BaseParser | None:
        return next(iter(parsers), None)

    def select_renderer(
        self, request: Request, renderers: Iterable[BaseRenderer], format_suffix: Any = None
    ) -> tuple[BaseRenderer, str]:
        renderer = next(iter(renderers))
        return renderer, renderer.media_type
