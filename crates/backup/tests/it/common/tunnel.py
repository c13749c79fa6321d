"""What the HTTPS fakes of hosted APIs share (saas_fake.py, azure_fake.py): an HTTP proxy
that answers `CONNECT host:443` itself, terminates TLS with a certificate the test CA signed
for the API hosts and serves the requests inside the tunnel, knowing which host they were
meant for (`tunnel_host`); plain requests (no CONNECT) reach the fake's control API."""
import json, ssl
from http.server import BaseHTTPRequestHandler


def server_tls(cert, key):
    """The TLS context the tunnels are served with."""
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    return tls


class Answer(Exception):
    """An API answer: status, JSON (or bytes) body, extra headers."""
    def __init__(self, status, body=None, headers=None):
        self.status, self.body, self.headers = status, body, headers or {}


class TunnelHandler(BaseHTTPRequestHandler):
    """A request handler whose subclass sets `tls` (see server_tls) and handles requests."""
    protocol_version = "HTTP/1.1"
    tunnel_host = None
    tls = None

    def log_message(self, *args):
        pass

    def do_CONNECT(self):
        host = self.path.rsplit(":", 1)[0]
        self.send_response(200, "Connection established")
        self.end_headers()
        self.wfile.flush()
        try:
            tls = self.tls.wrap_socket(self.connection, server_side=True)
        except (ssl.SSLError, OSError):
            self.close_connection = True
            return
        self.connection = tls
        self.rfile = tls.makefile("rb")
        self.wfile = tls.makefile("wb")
        self.tunnel_host = host
        self.close_connection = False
        while not self.close_connection:
            self.handle_one_request()
        self.close_connection = True

    def reply(self, status, body, headers=None):
        """Answers `body`: bytes as they are, anything else as JSON."""
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if not isinstance(body, bytes):
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        self.wfile.flush()
