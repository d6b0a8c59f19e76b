"""Measure the Node.js handler this service replaces, against the same fake ChatKit API.

Its source is not part of this project: it is read from the reference copy beside the
repository (../shared/reference/old-node-handler.md, or OLD_NODE_HANDLER_MD) at run time,
and its npm dependencies are installed into bench/.old-node/ (ignored by git).
"""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

BENCH = Path(__file__).resolve().parent
WORKDIR = BENCH / ".old-node"
# The versions the old handler's code works with (ChatKit in the Node SDK, SES v3 client).
PACKAGE_JSON = {
    "private": True,
    "type": "module",
    "dependencies": {"openai": "7.57.0", "@aws-sdk/client-ses": "3.1169.0"},
}


def _reference() -> Path | None:
    configured = os.environ.get("OLD_NODE_HANDLER_MD")
    candidate = (
        Path(configured)
        if configured
        else BENCH.parent.parent / "shared" / "reference" / "old-node-handler.md"
    )
    return candidate if candidate.is_file() else None


def _prepare(reference: Path) -> Path:
    WORKDIR.mkdir(exist_ok=True)
    package = WORKDIR / "package.json"
    wanted = json.dumps(PACKAGE_JSON, indent=2)
    if not package.exists() or package.read_text() != wanted or not (WORKDIR / "node_modules").is_dir():
        package.write_text(wanted)
        subprocess.run(["npm", "install", "--silent", "--no-audit", "--no-fund"], cwd=WORKDIR, check=True)
    source = re.search(r"```js\n(.*?)```", reference.read_text(), re.DOTALL)
    if source is None:
        raise SystemExit(f"no JavaScript handler found in {reference}")
    handler = WORKDIR / "handler.mjs"
    handler.write_text(source.group(1))
    return handler


def measure_old_node_handler(base_url: str, runs: int) -> dict | None:
    reference = _reference()
    if reference is None or not shutil.which("node") or not shutil.which("npm"):
        return None
    handler = _prepare(reference)
    result = subprocess.run(
        ["node", str(BENCH / "old_node_driver.mjs"), str(handler), str(runs)],
        cwd=WORKDIR,
        env={
            "PATH": os.environ["PATH"],
            "OPENAI_API_KEY": os.environ.get("BENCH_OPENAI_API_KEY", "sk-test-fake-chatkit-key"),
            "OPENAI_BASE_URL": base_url,
            "CHATKIT_WORKFLOW_ID": "wf_bench",
            "SES_REGION": "eu-west-1",
        },
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"the old Node handler failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])
