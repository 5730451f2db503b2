"""boto3 against moto's IAM, for the recall tests (tests/it/recall.rs): roles in several
accounts (moto keeps one IAM per account; an assumed role's credentials act in its
account), and their inline policy "rolegate-recall".

usage:
  iam_roles.py setup MOTO ARN...          -> creates each role (in the ARN's account)
  iam_roles.py policy MOTO ARN            -> the role's rolegate-recall policy (JSON) or "none"
  iam_roles.py put MOTO ARN DOCUMENT      -> writes that policy
"""
import json
import sys

import boto3

POLICY = "rolegate-recall"


def iam_in(moto, account):
    sts = boto3.client("sts", region_name="us-east-1", endpoint_url=moto,
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    c = sts.assume_role(RoleArn=f"arn:aws:iam::{account}:role/test-admin", RoleSessionName="tests")["Credentials"]
    return boto3.client("iam", region_name="us-east-1", endpoint_url=moto,
                        aws_access_key_id=c["AccessKeyId"], aws_secret_access_key=c["SecretAccessKey"],
                        aws_session_token=c["SessionToken"])


def split(arn):
    parts = arn.split(":")
    return parts[4], parts[5].rsplit("/", 1)[1]


def main():
    cmd, moto = sys.argv[1], sys.argv[2]
    if cmd == "setup":
        for arn in sys.argv[3:]:
            account, name = split(arn)
            iam = iam_in(moto, account)
            try:
                iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps({
                    "Version": "2012-10-17",
                    "Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"},
                                   "Action": ["sts:AssumeRole", "sts:SetSourceIdentity", "sts:TagSession"]}]}))
            except iam.exceptions.EntityAlreadyExistsException:
                pass
        print("ok")
    elif cmd == "policy":
        account, name = split(sys.argv[3])
        iam = iam_in(moto, account)
        try:
            doc = iam.get_role_policy(RoleName=name, PolicyName=POLICY)["PolicyDocument"]
            print(json.dumps(doc))
        except iam.exceptions.NoSuchEntityException:
            print("none")
    elif cmd == "put":
        account, name = split(sys.argv[3])
        iam_in(moto, account).put_role_policy(RoleName=name, PolicyName=POLICY, PolicyDocument=sys.argv[4])
        print("ok")
    else:
        sys.exit(f"unknown command {cmd}")


main()
