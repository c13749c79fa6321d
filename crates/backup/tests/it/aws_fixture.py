#!/usr/bin/env python3
"""Test fixtures in a moto server (scripts/moto-aws-test-server.py) through boto3 (which moto
depends on): what the tests set up and look at, never what `backup` does.

Usage: aws_fixture.py URL COMMAND [ARGS...]; prints JSON. Credentials: AWS_ACCESS_KEY_ID /
AWS_SECRET_ACCESS_KEY from the environment (moto accepts any until auth is turned on).

  rds-source ENGINE NAME PORT   a DB instance (mysql|postgres) on PORT; moto makes its
                                automated snapshot
  user NAME POLICY_JSON         an IAM user with that inline policy -> {key, secret}
  auth-on                       from now on moto checks SigV4 and IAM on every request
  instances                     DB instances -> [{id, status, port, tags}]
  volumes N                     N EBS volumes -> [ids]
  snapshot VOLUME [K=V...]      a snapshot tagged K=V (someone else's) -> id
  snapshots                     every snapshot -> [{id, volume, tags}]
"""
import json
import sys
import urllib.request

import boto3

url, command, args = sys.argv[1], sys.argv[2], sys.argv[3:]


def client(service):
    return boto3.client(service, region_name="eu-west-1", endpoint_url=url)


def tags(items):
    return {t["Key"]: t["Value"] for t in items or []}


if command == "rds-source":
    engine, name, port = args
    client("rds").create_db_instance(
        DBInstanceIdentifier=name, Engine=engine, DBInstanceClass="db.t3.small",
        AllocatedStorage=20, MasterUsername="admin", MasterUserPassword="not-used-1",
        Port=int(port), BackupRetentionPeriod=7)
    out = name
elif command == "user":
    name, policy = args
    iam = client("iam")
    iam.create_user(UserName=name)
    iam.put_user_policy(UserName=name, PolicyName="p", PolicyDocument=policy)
    key = iam.create_access_key(UserName=name)["AccessKey"]
    out = {"key": key["AccessKeyId"], "secret": key["SecretAccessKey"]}
elif command == "auth-on":
    # moto's INITIAL_NO_AUTH_ACTION_COUNT, set to 0 from now on (every request counted).
    req = urllib.request.Request(url + "/moto-api/reset-auth", data=b"0", method="POST",
                                 headers={"Content-Type": "text/plain"})
    out = json.load(urllib.request.urlopen(req))
elif command == "instances":
    out = [{"id": i["DBInstanceIdentifier"], "status": i["DBInstanceStatus"],
            "port": i.get("Endpoint", {}).get("Port"), "tags": tags(i.get("TagList"))}
           for i in client("rds").describe_db_instances()["DBInstances"]]
elif command == "volumes":
    ec2 = client("ec2")
    out = [ec2.create_volume(AvailabilityZone="eu-west-1a", Size=1)["VolumeId"]
           for _ in range(int(args[0]))]
elif command == "snapshot":
    volume, pairs = args[0], [a.split("=", 1) for a in args[1:]]
    spec = [{"ResourceType": "snapshot", "Tags": [{"Key": k, "Value": v} for k, v in pairs]}]
    extra = {"TagSpecifications": spec} if pairs else {}
    out = client("ec2").create_snapshot(VolumeId=volume, **extra)["SnapshotId"]
elif command == "snapshots":
    out = [{"id": s["SnapshotId"], "volume": s["VolumeId"], "tags": tags(s.get("Tags"))}
           for s in client("ec2").describe_snapshots(OwnerIds=["self"])["Snapshots"]]
else:
    sys.exit(f"unknown command {command}")
print(json.dumps(out))
