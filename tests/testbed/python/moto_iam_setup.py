"""Prepares a moto server running with IAM authentication for the access-denied test.

Creates user `broker` allowed to sts:AssumeRole on ONE role ARN only, and prints its access
key as JSON. Run against a moto started with INITIAL_NO_AUTH_ACTION_COUNT=3 (the three
calls below are made before authentication is enforced).

usage: moto_iam_setup.py ENDPOINT ALLOWED_ROLE_ARN
"""
import json
import sys

import boto3

endpoint, allowed = sys.argv[1], sys.argv[2]
iam = boto3.client("iam", region_name="us-east-1", endpoint_url=endpoint,
                   aws_access_key_id="testing", aws_secret_access_key="testing")
iam.create_user(UserName="broker")
iam.put_user_policy(UserName="broker", PolicyName="assume-one-role", PolicyDocument=json.dumps({
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": allowed}],
}))
key = iam.create_access_key(UserName="broker")["AccessKey"]
print(json.dumps({"AccessKeyId": key["AccessKeyId"], "SecretAccessKey": key["SecretAccessKey"]}))
