#!/usr/bin/env python
import os
import sys
from pathlib import Path


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatkit_site.settings")
    from dotenv import dotenv_values

    # Local development reads .env beside this file (or the file ENV_FILE names), exactly as
    # written: no `$` expansion, and `#` starts a comment only after a space. What the
    # environment already holds wins, and an empty value is left out, so that it means the
    # default for the SDKs too (an empty OPENAI_BASE_URL would be the OpenAI SDK's base URL).
    # Only commands read it: on Lambda and under a WSGI server the platform's environment is
    # the whole configuration.
    env_file = os.environ.get("ENV_FILE") or Path(__file__).resolve().with_name(".env")
    for name, value in dotenv_values(env_file, interpolate=False).items():
        if value and name not in os.environ:
            os.environ[name] = value
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
