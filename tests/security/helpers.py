def lambda_header(response, name):
    """A header of a Lambda reply, whichever way the event type returns headers."""
    single = {key.lower(): value for key, value in (response.get("headers") or {}).items()}
    multi = {key.lower(): values[-1] for key, values in (response.get("multiValueHeaders") or {}).items()}
    return {**multi, **single}[name.lower()]
