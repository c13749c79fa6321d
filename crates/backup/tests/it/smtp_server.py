"""A real SMTP server (aiosmtpd) for the notification tests: stores each message as
<out>/<n>.json with the envelope, the raw message, whether the client logged in (and as whom)
and whether the session was encrypted (then and when it logged in); <out>/ended holds the
number of sessions that ended (after which nothing of theirs can still be stored).

usage: smtp_server.py HOST PORT OUT [--auth USER:PASS] [--starttls CERT KEY] [--ssl CERT KEY]
                      [--starttls-optional]
PORT 0 binds a free port; the server prints `port=N` once it listens (with any PORT).
--auth: AUTH PLAIN/LOGIN offered (over plain text too) and checked against USER:PASS.
--starttls: STARTTLS offered and required before MAIL (--starttls-optional: offered only).
--ssl: TLS from the first byte."""
import argparse, json, os, socket, ssl, sys, time
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult

p = argparse.ArgumentParser()
p.add_argument("host"); p.add_argument("port", type=int); p.add_argument("out")
p.add_argument("--auth"); p.add_argument("--starttls", nargs=2); p.add_argument("--ssl", nargs=2)
p.add_argument("--starttls-optional", action="store_true")
a = p.parse_args()

def encrypted(server):
    # STARTTLS swaps in a TLS protocol; implicit TLS sits in the transport.
    return (server._tls_protocol is not None
            or server.transport.get_extra_info("ssl_object") is not None)

class Store:
    n = 0
    # Whether the connection was encrypted when the client's AUTH arrived, per session.
    auth_encrypted = {}
    async def handle_DATA(self, server, session, envelope):
        Store.n += 1
        rec = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "data": envelope.content.decode("utf-8", "replace"),
            "authenticated": bool(session.authenticated),
            "login": session.auth_data.decode() if isinstance(session.auth_data, bytes) else session.auth_data,
            "auth_encrypted": Store.auth_encrypted.get(id(session)),
            "tls": encrypted(server),
        }
        tmp = os.path.join(a.out, ".%d.tmp" % Store.n)
        with open(tmp, "w") as f:
            json.dump(rec, f)
        os.rename(tmp, os.path.join(a.out, "%d.json" % Store.n))
        return "250 OK"

def write_atomically(name, text):
    tmp = os.path.join(a.out, "." + name + ".tmp")
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, os.path.join(a.out, name))

class CountingSMTP(SMTP):
    """Counts sessions whose handler finished or was cancelled: a test that asserts that no
    mail arrived waits for its client's session to end instead of sleeping."""
    ended = 0
    async def _handle_client(self):
        try:
            await super()._handle_client()
        finally:
            CountingSMTP.ended += 1
            write_atomically("ended", "%d\n" % CountingSMTP.ended)

def authenticator(server, session, envelope, mechanism, data):
    Store.auth_encrypted[id(session)] = encrypted(server)
    user, pw = a.auth.split(":", 1)
    ok = data.login.decode() == user and data.password.decode() == pw
    # handled=False on failure: aiosmtpd then sends the 535 itself (True would leave the
    # client waiting for an answer nobody sends).
    if ok:
        return AuthResult(success=True, auth_data=data.login.decode())
    return AuthResult(success=False, handled=False)

def context(cert, key):
    c = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    c.load_cert_chain(cert, key)
    return c

kw = dict(hostname=a.host, port=a.port)
if a.auth:
    kw.update(authenticator=authenticator, auth_require_tls=False, auth_required=False)
if a.starttls:
    kw.update(tls_context=context(*a.starttls), require_starttls=not a.starttls_optional)
if a.ssl:
    kw.update(ssl_context=context(*a.ssl))
class AnyPortController(Controller):
    """Learns the bound port (PORT 0) and reports it; its readiness probe is a bare TCP
    connect, which makes asyncio build the protocol even for implicit TLS."""
    def _trigger_server(self):
        self.port = self.server.sockets[0].getsockname()[1]
        print("port=%d" % self.port, flush=True)
        socket.create_connection((self.hostname, self.port), 1.0).close()
    def factory(self):
        return CountingSMTP(self.handler, **self.SMTP_kwargs)

c = AnyPortController(Store(), **kw)
c.start()
while True:
    time.sleep(3600)
