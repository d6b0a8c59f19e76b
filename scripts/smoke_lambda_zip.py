"""Import and invoke the built Lambda zip from a clean, read-only directory.

    python scripts/smoke_lambda_zip.py [dist/chatkit-lambda.zip]

The package is unpacked as Lambda would (read-only, nothing else importable) and driven
with real event shapes by the Lambda Python version, against the fake ChatKit API that the
tests use, with its secrets read at init from a Secrets Manager stand-in (a moto server on
loopback) as the template gives them: by ARN. Exits non-zero, saying what failed, if the
artefact does not work.
"""

import http.client
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import boto3
import yaml
from moto.server import ThreadedMotoServer

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from scripts.lambda_python import lambda_python_command  # noqa: E402
from tests.fake_chatkit import API_KEY, FakeChatKit  # noqa: E402
from tests.lambda_events import (  # noqa: E402
    body_of,
    cloudformation_custom_resource_event,
    http_api_v2_event,
)
from tests.loopback import RecordingServer, recording_server  # noqa: E402

# Where the stand-in's secrets live; the package reads them with its own boto3.
SECRETS_REGION = "eu-west-1"
CLOUDFRONT_SECRET = "smoke-origin-secret-" + "c" * 30
# CloudFront's edge, the source API Gateway reports for every request the distribution sends.
EDGE = "130.176.212.7"

SWAGGER_UI = "drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js"

# Lambda refuses a zip-packaged function whose unpacked code is larger than this.
LAMBDA_UNPACKED_LIMIT = 250 * 2**20

# Runs inside the unpacked package, as the Lambda runtime would: the task root first on
# sys.path, then the handler imported once and invoked per event.
DRIVER = """
import importlib, json, sys, time
sys.path.insert(0, ".")
started = time.perf_counter()
handler = importlib.import_module("chatkit_site.lambda_handler").handler
import_seconds = time.perf_counter() - started
# DatabaseMigrationsFunction's handler (template.yaml), which CloudFormation's requests reach.
migrations_handler = importlib.import_module("chatkit_site.deploy_migrations").handler
class Context:
    # The attributes of the runtime's context object the handler reads.
    log_stream_name = "2026/11/27/[$LATEST]smoke"
    def __init__(self, number):
        self.aws_request_id = f"smoke-request-{number}"
        self._deadline = time.monotonic() + 900
    def get_remaining_time_in_millis(self):
        return int((self._deadline - time.monotonic()) * 1000)
def invoke(number, event):
    try:
        if isinstance(event, dict) and "RequestType" in event:
            return migrations_handler(event, Context(number))
        return handler(event, Context(number))
    except Exception as exc:
        # What the Lambda runtime reports for a function error.
        return {"errorType": type(exc).__name__, "errorMessage": str(exc)}
results = [invoke(number, event) for number, event in enumerate(json.load(sys.stdin))]
openai_module = sys.modules["openai"]
print(json.dumps({
    "import_seconds": import_seconds,
    "results": results,
    "openai_file": openai_module.__file__,
    "openai_bytecode": openai_module.__spec__.cached,
}))
"""


# Where SES and S3 clients (and STS, for botocore's credential providers) send requests, region by
# region. The package keeps a few services' AWS data (scripts/prune-lambda-package): it must
# resolve every endpoint exactly as botocore's full data does.
AWS_ENDPOINTS = """
import json, sys
sys.path.insert(0, ".")
import boto3, botocore
from botocore.config import Config
session = boto3.session.Session(aws_access_key_id="smoke", aws_secret_access_key="smoke")
endpoints = {"botocore": botocore.__version__}
regions = ("us-east-1", "eu-west-1", "us-gov-west-1", "cn-north-1", "ap-southeast-7", "eusc-de-east-1")
for service in ("sesv2", "ses", "s3", "secretsmanager", "sts"):
    for region in regions:
        for fips in (False, True):
            try:
                client = session.client(service, region_name=region, config=Config(use_fips_endpoint=fips))
                found = [client.meta.endpoint_url, client.meta.region_name]
            except Exception as exc:
                found = type(exc).__name__
            endpoints[f"{service} {region} fips={fips}"] = found
print(json.dumps(endpoints))
"""


def aws_endpoints(python: list[str], cwd: Path) -> dict:
    run = subprocess.run(
        [*python, "-s", "-c", AWS_ENDPOINTS],
        cwd=cwd,
        env={"PATH": os.environ["PATH"], "HOME": str(cwd)},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(run.stdout)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def streaming_function(task_root: Path, environment: dict[str, str]) -> dict:
    """Start the package's `serve`, as AWS Lambda Web Adapter starts the streaming function's
    handler, and ask it what the adapter asks: its readiness, then a ChatKit answer."""
    port = free_port()
    with tempfile.TemporaryDirectory() as bin_dir:
        # The handler runs `python3`: on Lambda, the runtime's.
        (Path(bin_dir) / "python3").symlink_to(shutil.which(lambda_python_command()[0]) or "")
        server = subprocess.Popen(
            ["./serve"],
            cwd=task_root,
            env={**environment, "PATH": f"{bin_dir}:{environment['PATH']}", "PORT": str(port)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                    connection.request("GET", "/")
                    ready = connection.getresponse()
                    ready.read()
                    readiness = ready.status
                    break
                except OSError:
                    if time.monotonic() > deadline or server.poll() is not None:
                        server.kill()
                        _, errors = server.communicate()
                        raise SystemExit(f"FAILED: serve did not start:\n{errors.decode()}") from None
                    time.sleep(0.2)
            body = json.dumps(
                {
                    "type": "threads.create",
                    "params": {
                        "input": {
                            "content": [{"type": "input_text", "text": "Hello from the adapter"}],
                            "attachments": [],
                            "inference_options": {},
                        }
                    },
                }
            )
            connection.request(
                "POST",
                "/api/chatkit",
                body,
                # As the adapter passes on a Function URL's request: HTTPS at the edge.
                {
                    "Content-Type": "application/json",
                    "Origin": f"https://127.0.0.1:{port}",
                    "X-Forwarded-Proto": "https",
                },
            )
            answer = connection.getresponse()
            result = {
                "readiness": readiness,
                "status": answer.status,
                "content_type": answer.getheader("Content-Type"),
                "body": answer.read().decode(),
            }
            connection.close()
            return result
        finally:
            server.terminate()
            server.wait(timeout=30)


def secrets_stand_in(url: str) -> dict[str, str]:
    """Create the secrets in the stand-in as a deployment keeps them: one JSON secret for the
    application; the environment the functions get, which names them by ARN only."""
    client = boto3.client(
        "secretsmanager",
        region_name=SECRETS_REGION,
        endpoint_url=url,
        aws_access_key_id="smoke",
        aws_secret_access_key="smoke",  # noqa: S106 - the stand-in takes any
    )
    values = {
        "DJANGO_SECRET_KEY": "smoke-test-" + "k" * 50,
        "OPENAI_API_KEY": API_KEY,
        "CLOUDFRONT_ORIGIN_SECRET": CLOUDFRONT_SECRET,
    }
    arn = client.create_secret(Name="chatkit-smoke", SecretString=json.dumps(values))["ARN"]
    return {
        **{f"{name}_SECRET_ARN": arn for name in values},
        "AWS_ENDPOINT_URL_SECRETS_MANAGER": url,
        "AWS_REGION": SECRETS_REGION,
        "AWS_ACCESS_KEY_ID": "smoke",
        "AWS_SECRET_ACCESS_KEY": "smoke",
    }


def through_cloudfront(viewer: str, secret: str) -> dict:
    """A session call as CloudFront passes it on, from its edge."""
    headers = {"cloudfront-viewer-address": viewer, "x-origin-secret": secret}
    return http_api_v2_event(source_ip=EDGE, headers=headers, body={})


def make_read_only(root: Path) -> None:
    for path in [root, *root.rglob("*")]:
        mode = path.stat().st_mode
        path.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def check(condition: bool, message: str) -> None:
    if not condition:
        sys.exit(f"FAILED: {message}")
    print(f"ok: {message}")


def smoke_test(cloudformation: RecordingServer) -> None:
    archive = Path(sys.argv[1] if len(sys.argv) > 1 else REPO / "dist" / "chatkit-lambda.zip")
    fake = FakeChatKit()
    fake.start()
    secrets_port = free_port()
    secrets_server = ThreadedMotoServer(ip_address="127.0.0.1", port=secrets_port, verbose=False)
    secrets_server.start()
    task_root = Path(tempfile.mkdtemp(prefix="lambda-task-"))
    try:
        with zipfile.ZipFile(archive) as package:
            package.extractall(task_root)
            package_files = [name for name in package.namelist() if name.startswith("staticfiles/")]
            # Lambda keeps the modes the zip records (zipfile does not): the streaming
            # function's handler must be executable.
            for entry in package.infolist():
                if entry.external_attr >> 16:
                    (task_root / entry.filename).chmod(entry.external_attr >> 16 & 0o777)
            serve_mode = package.getinfo("serve").external_attr >> 16
        check(bool(serve_mode & 0o111), "the streaming function's handler, serve, is executable")
        unpacked = sum(path.stat().st_size for path in task_root.rglob("*") if path.is_file())
        check(
            unpacked < LAMBDA_UNPACKED_LIMIT,
            f"unpacked package {unpacked / 2**20:.0f} MB, under Lambda's {LAMBDA_UNPACKED_LIMIT // 2**20} MB",
        )
        make_read_only(task_root)
        events = [
            # The deploy's migrations, on the empty database, as CloudFormation asks for them.
            cloudformation_custom_resource_event(request_type="Create", response_url=cloudformation.url),
            {"manage": "migrate --noinput"},
            {"manage": "resend_transcript 424242"},
            {"manage": "shell -c 'print(1)'"},
            {"manage": 42},
            {"metrics": "transcripts"},
            http_api_v2_event(body={"locale": "en", "pageUrl": "https://shop.example/"}),
            http_api_v2_event(method="GET", path="/static/admin/img/icon-yes.svg"),
            http_api_v2_event(path="/api/chatkit/transcript", body={"threadId": "cthr_1"}),
            http_api_v2_event(path="/nowhere"),
            http_api_v2_event(method="GET", path="/api/schema/"),
            http_api_v2_event(method="GET", path=f"/static/{SWAGGER_UI}"),
            # One session per address an hour: a viewer address written by the client is
            # ignored (the edge's own address is counted), CloudFront's with its secret is used.
            through_cloudfront("198.51.100.1:1000", "forged"),
            through_cloudfront("198.51.100.2:1000", "forged"),
            through_cloudfront("198.51.100.3:1000", CLOUDFRONT_SECRET),
            through_cloudfront("198.51.100.4:1000", CLOUDFRONT_SECRET),
        ]
        environment = {
            "PATH": os.environ["PATH"],
            "HOME": os.environ.get("HOME", "/tmp"),
            "AWS_LAMBDA_FUNCTION_NAME": "chatkit-smoke",
            "ALLOW_SQLITE_ON_LAMBDA": "true",
            **secrets_stand_in(f"http://127.0.0.1:{secrets_port}"),
            "RATE_LIMIT_SESSIONS_PER_IP": "1/hour",
            "OPENAI_BASE_URL": fake.base_url,
            "CHATKIT_WORKFLOW_ID": "wf_smoke",
            # Configured, so that a transcript call is turned away for its missing credentials.
            "SES_TO_EMAIL": "leads@shop.example",
        }
        sqlite = Path("/tmp/db.sqlite3")
        sqlite.unlink(missing_ok=True)
        run = subprocess.run(
            [*lambda_python_command(), "-s", "-c", DRIVER],
            cwd=task_root,
            env=environment,
            input=json.dumps(events),
            capture_output=True,
            text=True,
            timeout=120,
        )
        if run.returncode != 0:
            sys.exit(f"FAILED: the handler did not run:\n{run.stderr}")
        report = json.loads(run.stdout.strip().splitlines()[-1])
        results, cloudfront = report["results"][:12], report["results"][12:]
        (
            deploy,
            migrate,
            failing,
            refused,
            malformed,
            metrics,
            session,
            static,
            transcript,
            missing,
            schema,
            swagger_ui,
        ) = results

        answers = [json.loads(request.body) for request in cloudformation.requests]
        check(
            deploy.get("Status") == "SUCCESS"
            and [answer["Status"] for answer in answers] == ["SUCCESS"]
            and "Applying chatkit_api.0001_initial... OK" in answers[0]["Reason"],
            "the deploy's migrations migrate and answer CloudFormation SUCCESS "
            f"(returned {deploy.get('Status', deploy)}, answered {[answer['Status'] for answer in answers]})",
        )
        said = migrate.get("errors", migrate.get("errorMessage", "")).strip()
        check(
            migrate.get("exit_code") == 0 and "No migrations to apply" in migrate["output"],
            f"migrate event exits 0, with nothing left to apply ({said or 'no errors'})",
        )
        check(
            failing.get("errorType") == "ManagementCommandFailed" and "424242" in failing["errorMessage"],
            f"a manage event whose command fails fails the invocation (got {failing})",
        )
        emf = [json.loads(line) for line in run.stdout.splitlines() if line.startswith('{"_aws"')]
        check(
            metrics == {"TranscriptsFailed": 0, "TranscriptsStuck": 0} and len(emf) == 1,
            f"the metrics event writes the transcript backlog as one EMF line ({metrics}, {len(emf)} lines)",
        )
        check(
            refused.get("errorType") == "ManageCommandNotAllowed"
            and "manage shell is not allowed" in refused["errorMessage"],
            f"a manage event naming a command not on the list is refused (got {refused})",
        )
        check(
            malformed.get("errorType") == "MalformedManageEvent",
            f"a manage event that is not a command line is refused (got {malformed})",
        )
        log_lines = run.stderr.splitlines()
        records = [json.loads(line) for line in log_lines if line.startswith("{")]
        check(
            bool(records) and len(records) == len(log_lines) and all("aws_request_id" in r for r in records),
            f"every log line is JSON with the invocation's request id ({len(records)} of {len(log_lines)})",
        )
        check(
            any(
                r["aws_request_id"] == "smoke-request-2"
                and r["message"].startswith("manage resend_transcript")
                for r in records
            ),
            "the failing command's log line carries its invocation's request id",
        )
        check(
            session["statusCode"] == 200,
            "session call answers 200, with the OpenAI key read from Secrets Manager "
            f"(got {session['statusCode']})",
        )
        check("client_secret" in json.loads(session["body"]), "session reply carries a client_secret")
        check(session["cookies"][0].startswith("chatkit_visitor="), "session reply sets the visitor cookie")
        check(static["statusCode"] == 200 and static["isBase64Encoded"], "admin static file served, base64")
        check(transcript["statusCode"] == 401, "transcript call without credentials answers 401")
        forged_first, forged_second, trusted_first, trusted_second = (
            call["statusCode"] for call in cloudfront
        )
        check(
            (forged_first, forged_second) == (200, 429),
            "a CloudFront-Viewer-Address without the origin secret is ignored "
            f"(got {forged_first}, {forged_second})",
        )
        check(
            (trusted_first, trusted_second) == (200, 200),
            f"with the origin secret from Secrets Manager, viewers behind one edge are counted apart "
            f"(got {trusted_first}, {trusted_second})",
        )
        check(missing["statusCode"] == 404, "unknown path answers 404")
        check(schema["statusCode"] == 200, f"API schema answers 200 (got {schema['statusCode']})")
        check(
            set(yaml.safe_load(body_of(schema))["paths"])
            == {"/api/chatkit/session", "/api/chatkit/transcript"},
            "API schema describes both endpoints",
        )
        check(swagger_ui["statusCode"] == 200, "Swagger UI served from the package")
        left_out = [name for name in package_files if name.endswith(".map") or "/redoc/" in name]
        check(not left_out, f"no source maps or ReDoc collected ({len(left_out)} found)")
        check(report["openai_file"].startswith(str(task_root)), "openai imported from the package")
        check(Path(report["openai_bytecode"]).is_file(), "openai loaded with precompiled bytecode")
        with tempfile.TemporaryDirectory() as elsewhere:
            full_data = aws_endpoints([sys.executable], Path(elsewhere))
        check(
            aws_endpoints(lambda_python_command(), task_root) == full_data,
            "SES, S3, Secrets Manager and STS endpoints resolve as with botocore's full data "
            f"({len(full_data) - 1} checked)",
        )
        print(f"handler import took {report['import_seconds']:.2f}s")
        served = streaming_function(
            task_root, {**environment, "CHATKIT_MODE": "self_hosted", "DJANGO_ALLOWED_HOSTS": "127.0.0.1"}
        )
        check(
            served["readiness"] < 500,
            f"serve answers the adapter's readiness check (got {served['readiness']})",
        )
        check(
            served["status"] == 200 and served["content_type"] == "text/event-stream",
            f"serve streams a ChatKit answer (got {served['status']} {served['content_type']})",
        )
        check(
            "Echo: Hello from the adapter" in served["body"],
            "the streamed answer comes from the agent's model",
        )
        sqlite.unlink(missing_ok=True)
    finally:
        fake.stop()
        secrets_server.stop()
        for path in [task_root, *task_root.rglob("*")]:
            path.chmod(path.stat().st_mode | stat.S_IWUSR)
        shutil.rmtree(task_root)


def main() -> None:
    # Stands in for the pre-signed S3 URL CloudFormation waits on for the deploy's answer.
    with recording_server() as cloudformation:
        smoke_test(cloudformation)


if __name__ == "__main__":
    main()
