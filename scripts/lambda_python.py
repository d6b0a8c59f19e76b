"""The command that runs the Python version Lambda runs (LAMBDA_PYTHON_VERSION, default 3.12).

Bytecode compiled for the Lambda package, and any measurement of it, must use that version:
`python3.12` on PATH, or the newest matching pyenv version.

    python3 scripts/lambda_python.py    # prints it, e.g. /root/.pyenv/versions/3.12.1/bin/python3.12
"""

import os
import shutil
import subprocess
import sys

LAMBDA_PYTHON_VERSION = os.environ.get("LAMBDA_PYTHON_VERSION", "3.12")


def lambda_python_command() -> list[str]:
    command = [f"python{LAMBDA_PYTHON_VERSION}"]
    if shutil.which(command[0]) and subprocess.run([*command, "-c", ""], capture_output=True).returncode == 0:
        return command
    if shutil.which("pyenv"):
        installed = subprocess.run(
            ["pyenv", "versions", "--bare"], capture_output=True, text=True
        ).stdout.split()
        matches = [version for version in installed if version.startswith(LAMBDA_PYTHON_VERSION + ".")]
        if matches:
            # The interpreter itself, not pyenv's shim: the shim adds a shell start-up to
            # every process, which would distort cold-start measurements.
            prefix = subprocess.run(
                ["pyenv", "prefix", matches[-1]], capture_output=True, text=True
            ).stdout.strip()
            return [os.path.join(prefix, "bin", command[0])]
    raise SystemExit(
        f"Python {LAMBDA_PYTHON_VERSION} is needed: Lambda runs it, and its bytecode is version-specific."
    )


if __name__ == "__main__":
    sys.stdout.write(" ".join(lambda_python_command()) + "\n")
