from typing import Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser


class AnyContentTypeJSONParser(JSONParser):
    """Parse the body as JSON whatever Content-Type the caller sent.

    The handler this service replaces parsed every body as JSON, and sites embedding the
    widget sometimes post with `text/plain` to avoid a CORS preflight; both must keep working.
    """

    media_type = "*/*"

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            # Python's json module gives up on deep nesting with RecursionError, which DRF does
            # not turn into a 400 as it does every other JSON error.
            raise ParseError("JSON parse error - the body is nested too deeply.") from None
