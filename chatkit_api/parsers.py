from rest_framework.parsers import JSONParser


class AnyContentTypeJSONParser(JSONParser):
    """Parse the body as JSON whatever Content-Type the caller sent.

    The handler this service replaces parsed every body as JSON, and sites embedding the
    widget sometimes post with `text/plain` to avoid a CORS preflight; both must keep working.
    """

    media_type = "*/*"
