"""Local stand-ins for what ``bin/run`` cannot reach from a developer's machine
(docs/decisions/0090): AWS (moto in server mode: EventBridge for the bridge, SES and SNS
for notify, S3 for the catalog's images) with an EventBridge rule that copies every
bookstore event to an SQS queue (``bookstore events`` reads it), and a mail catcher
(ops/mailcatcher.py, ``bookstore mail``). Each is started only when the environment does
not point somewhere else (``AWS_ENDPOINT_URL``; ``NOTIFY_SMTP_HOST``/``NOTIFY_SMTP_PORT``).
"""

from __future__ import annotations

import json
import socket
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import boto3
import requests

from common.config import REPO_ROOT
from ops.mailcatcher import MAIL_DIR
from ops.processes import ManagedProcess

#: Where bin/run says which stand-ins run where (read by ``bookstore events``).
STATE_FILE = REPO_ROOT / "var" / "standins.json"
#: moto accepts any credentials; these make sure real ones are never used by accident.
LOCAL_AWS_ENV = {
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "local",
    "AWS_SECRET_ACCESS_KEY": "local",
}
EVENT_BUS = "bookstore"
MIRROR_QUEUE = "bookstore-mirrored-events"
MIRROR_RULE = "bookstore-all-events"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def local_aws_process(
    port: int, log_dir: Path, env: dict[str, str] = LOCAL_AWS_ENV, name: str = "aws (moto)"
) -> ManagedProcess:
    """moto in server mode (what ``bin/run`` and the test platform use for AWS)."""
    return ManagedProcess(
        name=name,
        command=[
            str(Path(sys.executable).parent / "moto_server"),
            "-H",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        log_path=log_dir / "moto.log",
        env=env,
    )


def mail_catcher_process(port: int, log_dir: Path) -> ManagedProcess:
    return ManagedProcess(
        name="mail catcher",
        command=[sys.executable, "-m", "ops.mailcatcher", str(port), str(MAIL_DIR)],
        log_path=log_dir / "mail.log",
    )


def aws_client(service: str, endpoint: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=LOCAL_AWS_ENV["AWS_REGION"],
        aws_access_key_id=LOCAL_AWS_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=LOCAL_AWS_ENV["AWS_SECRET_ACCESS_KEY"],
    )


def wait_for_local_aws(endpoint: str, process: ManagedProcess, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if not process.running:
            raise RuntimeError(f"moto exited while starting; its log ends:\n{process.log_tail()}")
        try:
            requests.get(f"{endpoint}/moto-api/", timeout=2)
            return
        except requests.RequestException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def prepare_local_aws(endpoint: str, sender: str, image_bucket: str) -> str:
    """The bridge's bus, a rule sending every bookstore event to a queue, the sender's
    identity verified for SES, the catalog's image bucket; returns the queue's URL."""
    aws_client("s3", endpoint).create_bucket(Bucket=image_bucket)
    events, sqs = aws_client("events", endpoint), aws_client("sqs", endpoint)
    events.create_event_bus(Name=EVENT_BUS)
    queue_url = sqs.create_queue(QueueName=MIRROR_QUEUE)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    events.put_rule(
        Name=MIRROR_RULE,
        EventBusName=EVENT_BUS,
        EventPattern=json.dumps({"source": [{"prefix": "bookstore."}]}),
    )
    events.put_targets(
        Rule=MIRROR_RULE, EventBusName=EVENT_BUS, Targets=[{"Id": "queue", "Arn": queue_arn}]
    )
    aws_client("ses", endpoint).verify_email_identity(EmailAddress=sender)
    return queue_url


def save_state(state: Mapping[str, Any]) -> None:
    STATE_FILE.parent.mkdir(parents=True, exist_ok=True)
    STATE_FILE.write_text(json.dumps(dict(state), indent=2))


def load_state() -> dict[str, Any]:
    if not STATE_FILE.exists():
        return {}
    return json.loads(STATE_FILE.read_text())


def mirrored_events(queue_url: str, endpoint: str, wait_seconds: int) -> list[dict[str, Any]]:
    """Takes the events waiting in the mirror queue (each is shown once)."""
    sqs = aws_client("sqs", endpoint)
    received = sqs.receive_message(
        QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=wait_seconds
    ).get("Messages", [])
    for message in received:
        sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    return [json.loads(message["Body"]) for message in received]


def describe_event(event: dict[str, Any]) -> str:
    detail = event.get("detail") or {}
    return (
        f"{event.get('time', '?')}  {event.get('source', '?')}  {event.get('detail-type', '?')}"
        f"  id {detail.get('id', event.get('id', '?'))}"
    )
