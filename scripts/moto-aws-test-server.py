#!/usr/bin/env python3
"""moto server (PyPI `moto[server]`) for the backup crate's rds, rds-pgsql and snapshot tests.

moto's RDS model is patched before serving, so that the dump of a restored instance is real:
- every DB instance reports its endpoint address as 127.0.0.1 (moto invents a host name);
  its port is moto's own copy of the source instance's port, so a source instance created
  with the local MariaDB/PostgreSQL test server's port points a restore at that server;
- a restored instance reports `creating` for its first N DescribeDBInstances answers (moto
  reports `available` at once), N from MOTO_RDS_CREATING_POLLS: a number, or the path of a
  file holding one (read at each restore, so a test can change it between runs); default 2.

Everything else is moto's: SigV4 and IAM are checked once the test turns them on (moto's
INITIAL_NO_AUTH_ACTION_COUNT, or its /moto-api/reset-auth). In-memory: every start is empty.

Usage: python3 scripts/moto-aws-test-server.py
  Binds 127.0.0.1 port 0, prints `port=<n>`, serves until killed.
  Exit 3 when moto is not installed (tests skip, unless CUSTOS_REQUIRE_SERVICES=1).
"""
import os
import socket
import sys

try:
    from moto.rds import models as rds_models
    from moto.server import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import make_server
except ImportError as e:  # pragma: no cover - environment check
    print(f"moto-aws-test-server: MISSING: moto[server] ({e}); scripts/install-deps.sh",
          file=sys.stderr)
    sys.exit(3)


def creating_polls():
    value = os.environ.get("MOTO_RDS_CREATING_POLLS", "2")
    if os.path.isfile(value):
        with open(value) as f:
            value = f.read().strip()
    return int(value)


rds_models.DBInstance.address = property(lambda self: "127.0.0.1")

_restore = rds_models.RDSBackend.restore_db_instance_from_db_snapshot
_describe = rds_models.RDSBackend.describe_db_instances


def restore(self, *args, **kwargs):
    db = _restore(self, *args, **kwargs)
    db._custos_polls = creating_polls()
    if db._custos_polls > 0:
        db.status = "creating"
    return db


def describe(self, *args, **kwargs):
    found = _describe(self, *args, **kwargs)
    for db in found:
        left = getattr(db, "_custos_polls", 0)
        if left > 0:
            db._custos_polls = left - 1
            db.status = "creating"
        elif db.status == "creating":
            db.status = "available"
    return found


rds_models.RDSBackend.restore_db_instance_from_db_snapshot = restore
rds_models.RDSBackend.describe_db_instances = describe

sock = socket.socket()
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
sock.bind(("127.0.0.1", 0))
sock.listen(128)
port = sock.getsockname()[1]
os.environ["MOTO_PORT"] = str(port)
print(f"port={port}", flush=True)
make_server("127.0.0.1", port, DomainDispatcherApplication(create_backend_app),
            threaded=True, fd=sock.fileno()).serve_forever()
