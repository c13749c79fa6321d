#!/usr/bin/env bash
# Runs moto's S3 server (PyPI `moto[server]`, installed by scripts/install-deps.sh) on
# 127.0.0.1 for the `backup` crate's s3/minio tests. In-memory: every start is an empty store.
#
# Usage: scripts/moto-test-server.sh [PORT]
#   Without PORT the server binds port 0 itself and keeps that socket (no other program can
#   take the port between a pick and the bind). Prints `port=<n>` on stdout, then becomes the
#   server (exec), so the caller's child PID is the server's: killing it is the injected failure.
#   Exit 3 when moto is not installed (tests skip, unless CUSTOS_REQUIRE_SERVICES=1).
set -euo pipefail
if command -v moto_server >/dev/null 2>&1; then
	server=(moto_server)
elif python3 -c 'import moto.server' >/dev/null 2>&1; then
	server=(python3 -m moto.server)
else
	echo "moto-test-server: MISSING: moto_server (pip install 'moto[server]'; scripts/install-deps.sh)" >&2
	exit 3
fi
if [[ -z ${1:-} ]] && python3 -c 'import moto.server, werkzeug.serving' >/dev/null 2>&1; then
	# moto's own main, on a socket bound to port 0 (MOTO_PORT: moto builds URLs with it).
	exec python3 -c '
import os, socket
from moto.server import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import make_server
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 0))
s.listen(128)
port = s.getsockname()[1]
os.environ["MOTO_PORT"] = str(port)
print("port=%d" % port, flush=True)
make_server("127.0.0.1", port, DomainDispatcherApplication(create_backend_app),
            threaded=True, fd=s.fileno()).serve_forever()
'
fi
port=${1:-$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
echo "port=$port"
exec "${server[@]}" -H 127.0.0.1 -p "$port"
