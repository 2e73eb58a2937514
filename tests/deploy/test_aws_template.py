"""deploy/aws/eventbridge-consumers.yaml: valid CloudFormation (cfn-lint), and, deployed
to moto, its rules route the entries the bridge makes to each consumer's queue."""

from __future__ import annotations

import json
import uuid

import pytest
from cfnlint.api import lint_all
from cfnlint.decode import decode_str
from moto import mock_aws

from common.config import REPO_ROOT
from common.events import make_envelope
from svc_bridge.mirror import to_entry
from tests.outside import AWS_TEST_ENV, aws

TEMPLATE = REPO_ROOT / "deploy" / "aws" / "eventbridge-consumers.yaml"


def test_the_template_passes_cfn_lint():
    # Errors and warnings, as the cfn-lint command reports by default (I* are hints).
    findings = [str(m) for m in lint_all(TEMPLATE.read_text()) if not m.rule.id.startswith("I")]
    assert findings == []


@pytest.fixture
def stack(monkeypatch):
    for name, value in AWS_TEST_ENV.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        cloudformation = aws("cloudformation", None)
        cloudformation.create_stack(StackName="consumers", TemplateBody=TEMPLATE.read_text())
        outputs = cloudformation.describe_stacks(StackName="consumers")["Stacks"][0]["Outputs"]
        yield {output["OutputKey"]: output["OutputValue"] for output in outputs}


def _bodies(queue_url):
    answer = aws("sqs", None).receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)
    return [json.loads(message["Body"]) for message in answer.get("Messages", [])]


def test_each_consumer_receives_what_its_rule_selects(stack):
    paid = make_envelope("order", "order.paid", {"id": str(uuid.uuid4())})
    registered = make_envelope("auth", "user.registered", {"user_id": str(uuid.uuid4())})
    answer = aws("events", None).put_events(
        Entries=[
            to_entry("order", paid, "bookstore"),
            to_entry("auth", registered, "bookstore"),
        ]
    )
    assert answer["FailedEntryCount"] == 0
    fulfilment = _bodies(stack["FulfilmentQueueUrl"])
    assert [(event["detail-type"], event["detail"]["id"]) for event in fulfilment] == [
        ("order.paid", paid["id"])
    ]
    analytics = {event["detail"]["id"] for event in _bodies(stack["AnalyticsQueueUrl"])}
    assert analytics == {paid["id"], registered["id"]}


def test_every_target_queue_has_the_policy_real_aws_requires():
    # moto's CloudFormation skips AWS::SQS::QueuePolicy (and does not enforce it), so the
    # template itself is checked: each rule's queue lets that rule, and only it, send.
    template, errors = decode_str(TEMPLATE.read_text())
    assert not errors
    resources = template["Resources"]
    policies = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::SQS::QueuePolicy"]
    rules = {name: r for name, r in resources.items() if r["Type"] == "AWS::Events::Rule"}
    assert len(rules) == 2
    for rule_name, rule in rules.items():
        for target in rule["Properties"]["Targets"]:
            queue = target["Arn"]["Fn::GetAtt"][0]
            [policy] = [p for p in policies if {"Ref": queue} in p["Queues"]]
            [statement] = policy["PolicyDocument"]["Statement"]
            assert statement["Principal"] == {"Service": "events.amazonaws.com"}
            assert statement["Action"] == "sqs:SendMessage"
            assert {"Fn::GetAtt": [queue, "Arn"]} in statement["Resource"]
            source = statement["Condition"]["ArnEquals"]["aws:SourceArn"]
            assert source == {"Fn::GetAtt": [rule_name, "Arn"]}
