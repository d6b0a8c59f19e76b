"""Variables from a `.env` file, for local development only.

`manage.py` and the ASGI application read `.env` beside the project (or the file ENV_FILE
names) exactly as written: no `$` expansion, and `#` starts a comment only after a space.
What the environment already holds wins, and an empty value is left out, so that it means the
default for the SDKs too (an empty OPENAI_BASE_URL would be the OpenAI SDK's base URL). On
Lambda nothing is read: the function's environment is the whole configuration.
"""

import os
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent


def load_local_env() -> None:
    if os.environ.get("AWS_LAMBDA_FUNCTION_NAME"):
        return
    from dotenv import dotenv_values

    env_file = os.environ.get("ENV_FILE") or PROJECT / ".env"
    for name, value in dotenv_values(env_file, interpolate=False).items():
        if value and name not in os.environ:
            os.environ[name] = value
