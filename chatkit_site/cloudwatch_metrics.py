"""Metrics for CloudWatch in its embedded metric format (EMF): one JSON line on the Lambda
function's standard output, which CloudWatch Logs turns into metrics without an API call (and
without the CloudWatch client in the package).

    {"metrics": "transcripts"}   # a Lambda event: the transcripts that have not reached staff

The template invokes the function with that event on a schedule and alarms on the metrics.
"""

import json
import os
import sys
import time
from typing import Any, TextIO

NAMESPACE = "ChatKitBackend"


def emf_record(metrics: dict[str, int], *, dimensions: dict[str, str], unit: str = "Count") -> dict[str, Any]:
    return {
        "_aws": {
            "Timestamp": int(time.time() * 1000),
            "CloudWatchMetrics": [
                {
                    "Namespace": NAMESPACE,
                    "Dimensions": [sorted(dimensions)],
                    "Metrics": [{"Name": name, "Unit": unit} for name in metrics],
                }
            ],
        },
        **dimensions,
        **metrics,
    }


def transcript_metrics(stream: TextIO | None = None) -> dict[str, int]:
    """Write TranscriptsFailed and TranscriptsStuck, per function, as one EMF line."""
    from chatkit_api.services import transcripts_backlog

    backlog = transcripts_backlog()
    metrics = {"TranscriptsFailed": backlog["failed"], "TranscriptsStuck": backlog["stuck"]}
    # The function's name is the dimension the template's alarms select: one per stack.
    dimensions = {"FunctionName": os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "local")}
    out = stream or sys.stdout
    out.write(json.dumps(emf_record(metrics, dimensions=dimensions)) + "\n")
    out.flush()
    return metrics
