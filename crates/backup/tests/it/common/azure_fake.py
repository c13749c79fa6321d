"""A fake of the Azure APIs the `azure-managed-disk` source uses, behind one HTTPS proxy:
Entra ID's client-credentials token endpoint, Resource Manager (disks.get; snapshots create,
get, list with nextLink paging, delete, beginGetAccess, endGetAccess; long-running operations
polled through Azure-AsyncOperation and Location) and the blob endpoint serving a snapshot
through its SAS URL with Range requests.

The binary under test runs with HTTPS_PROXY=http://127.0.0.1:PORT and SSL_CERT_FILE=<test CA>:
it sends `CONNECT host:443`, this script answers 200, terminates TLS with CERT (signed by the
test CA for the Azure host names) and serves the API of that host. Every request is checked
as Azure checks it (bearer token this fake issued and not expired, api-version, subscription,
the body's fields) and recorded; a request that fails a check is answered with Azure's error
and also listed under `errors`, so a test can assert there were none.

Plain requests to /_control/... (no CONNECT): GET requests, GET state (snapshots, errors),
POST fault {kind: blob503 {from, times} | blobdrop {at, times} | blobstall {times} |
nopagelist | createfail | grantfail} (blobstall: a blob answer sends 1 MiB, then nothing for 60 s),
POST snapshot {name, tags, diskState?, state?} (seed one in the destination group),
POST lifetime {seconds} (of the tokens issued from then on).

usage: azure_fake.py CERT KEY --tenant T --client ID:SECRET --subscription S
                     --disk GROUP/NAME:FILE --snapshots GROUP
Prints `port=N` once listening on 127.0.0.1 (a free port)."""
import argparse, json, re, secrets, threading, time
import urllib.parse
from http.server import ThreadingHTTPServer

from tunnel import Answer, TunnelHandler, server_tls

p = argparse.ArgumentParser()
p.add_argument("cert"); p.add_argument("key")
p.add_argument("--tenant", required=True); p.add_argument("--client", required=True)
p.add_argument("--subscription", required=True); p.add_argument("--disk", required=True)
p.add_argument("--snapshots", required=True)
a = p.parse_args()
CLIENT_ID, CLIENT_SECRET = a.client.split(":", 1)
SUB = a.subscription
DISK_SPEC, DISK_FILE = a.disk.split(":", 1)
DISK_RG, DISK_NAME = DISK_SPEC.split("/", 1)
SNAP_RG = a.snapshots
API = "2023-04-02"
LOCATION = "westeurope"
BLOB_HOST = "md-fake0001.blob.core.windows.net"
PAGE = 2          # snapshots per list page, so the client must follow nextLink
LRO_POLLS = 2     # polls an operation answers "InProgress" before it ends
AUTHORITIES = {"login.microsoftonline.com", "login.microsoftonline.us"}
ARMS = {"management.azure.com", "management.usgovcloudapi.net"}
with open(DISK_FILE, "rb") as f:
    DISK_DATA = f.read()


lock = threading.Lock()
record, errors, faults = [], [], []
tokens = {}        # token -> (expiry, arm host it was issued for)
lifetime = [3599]
snapshots = {}     # name -> snapshot dict (destination group only)
ops = {}           # id -> {left, fail, effect, result}
counter = [0]

def disk_id():
    return "/subscriptions/%s/resourceGroups/%s/providers/Microsoft.Compute/disks/%s" % (
        SUB, DISK_RG, DISK_NAME)

def snap_json(s):
    return {"name": s["name"], "id": "/subscriptions/%s/resourceGroups/%s/providers/"
            "Microsoft.Compute/snapshots/%s" % (SUB, SNAP_RG, s["name"]),
            "type": "Microsoft.Compute/snapshots", "location": LOCATION, "tags": s["tags"],
            "properties": {"provisioningState": s["state"], "diskState": s["diskState"],
                           "diskSizeBytes": len(s["data"]),
                           "creationData": {"createOption": "Copy", "sourceResourceId": disk_id()}}}

def reject(status, code, message):
    errors.append("%d %s: %s" % (status, code, message))
    raise Answer(status, {"error": {"code": code, "message": message}})

def take_fault(kind):
    for f in faults:
        if f["kind"] == kind and f.get("times", 1) > 0:
            f["times"] = f.get("times", 1) - 1
            return f
    return None

class Handler(TunnelHandler):
    def handle_any(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        url = urllib.parse.urlsplit(self.path)
        q = dict(urllib.parse.parse_qsl(url.query))
        if self.tunnel_host is None:
            return self.control(url, body)
        rec = {"method": self.command, "host": self.tunnel_host, "path": url.path, "query": q,
               "headers": {k.lower(): v for k, v in self.headers.items()},
               "body": body.decode("utf-8", "replace")[:4096]}
        with lock:
            record.append(rec)
        try:
            if self.tunnel_host in AUTHORITIES:
                with lock:
                    token(self, url, body)
            elif self.tunnel_host in ARMS:
                with lock:
                    arm(self, url, q, body)
            elif self.tunnel_host == BLOB_HOST:
                return blob(self, url, q)
            with lock:
                reject(404, "NoSuchHost", "no such host in the fake: " + self.tunnel_host)
        except Answer as ans:
            rec["status"] = ans.status
            self.reply(ans.status, ans.body, ans.headers)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = handle_any

    def control(self, url, body):
        with lock:
            if url.path == "/_control/requests":
                return self.reply(200, record)
            if url.path == "/_control/state":
                return self.reply(200, {"errors": errors, "tokens": len(tokens), "snapshots": {
                    n: {"tags": s["tags"], "diskState": s["diskState"], "state": s["state"],
                        "sas": s["sas"] is not None} for n, s in snapshots.items()}})
            if url.path == "/_control/fault":
                faults.append(json.loads(body))
                return self.reply(200, {})
            if url.path == "/_control/lifetime":
                lifetime[0] = json.loads(body)["seconds"]
                return self.reply(200, {})
            if url.path == "/_control/snapshot":
                j = json.loads(body)
                snapshots[j["name"]] = {"name": j["name"], "tags": j.get("tags"),
                                        "state": j.get("state", "Succeeded"), "data": b"old",
                                        "diskState": j.get("diskState", "Unattached"),
                                        "sas": secrets.token_hex(8) if j.get("diskState") == "ActiveSAS" else None}
                return self.reply(200, {})
        self.reply(404, {"error": "no such control"})

# ---- Entra ID: client credentials ----

def token(h, url, body):
    if h.command != "POST" or url.path != "/%s/oauth2/v2.0/token" % a.tenant:
        reject(400, "invalid_request", "unknown tenant or endpoint %s %s" % (h.command, url.path))
    if not h.headers.get("Content-Type", "").startswith("application/x-www-form-urlencoded"):
        reject(400, "invalid_request", "not a form")
    form = dict(urllib.parse.parse_qsl(body.decode()))
    if form.get("grant_type") != "client_credentials":
        reject(400, "unsupported_grant_type", "grant_type")
    if form.get("client_id") != CLIENT_ID or form.get("client_secret") != CLIENT_SECRET:
        # Entra ID's answer to a wrong secret (AADSTS7000215).
        errors.append("401 invalid_client")
        raise Answer(401, {"error": "invalid_client",
                           "error_description": "AADSTS7000215: Invalid client secret provided."})
    arm_host = "management.usgovcloudapi.net" if h.tunnel_host.endswith(".us") else "management.azure.com"
    if form.get("scope") != "https://%s/.default" % arm_host:
        reject(400, "invalid_scope", "scope %r" % form.get("scope"))
    counter[0] += 1
    t = "eyJ0eXAi.fake-arm-token-%d.%s" % (counter[0], secrets.token_hex(8))
    tokens[t] = (time.time() + lifetime[0], arm_host)
    raise Answer(200, {"token_type": "Bearer", "expires_in": lifetime[0], "ext_expires_in": lifetime[0],
                       "access_token": t})

# ---- Resource Manager ----

GROUP = r"^/subscriptions/([^/]+)/resourceGroups/([^/]+)/providers/Microsoft\.Compute"

def new_op(effect=None, result=None, fail=None):
    counter[0] += 1
    oid = "op-%d-%s" % (counter[0], secrets.token_hex(4))
    ops[oid] = {"left": LRO_POLLS, "effect": effect, "result": result, "fail": fail, "done": False}
    return oid

def op_urls(h, oid):
    base = "https://%s/subscriptions/%s/providers/Microsoft.Compute/locations/%s/operations/%s" % (
        h.tunnel_host, SUB, LOCATION, oid)
    return base + "?api-version=" + API, base + "?monitor=true&api-version=" + API

def step(o):
    """One poll of an operation: True once it ended (its effect applied once)."""
    if o["left"] > 0:
        o["left"] -= 1
        return False
    if not o["done"]:
        o["done"] = True
        if o["effect"] is not None and o["fail"] is None:
            o["effect"]()
    return True

def arm(h, url, q, body):
    auth = h.headers.get("Authorization", "")
    t = tokens.get(auth[len("Bearer "):]) if auth.startswith("Bearer ") else None
    if t is None or t[0] < time.time():
        reject(401, "InvalidAuthenticationToken", "The access token is invalid or expired.")
    if t[1] != h.tunnel_host:
        reject(401, "InvalidAuthenticationTokenAudience", "token issued for " + t[1])
    if q.get("api-version") != API:
        reject(400, "InvalidApiVersionParameter", "api-version %r" % q.get("api-version"))
    path, m = url.path, None
    m = re.match(r"^/subscriptions/([^/]+)/providers/Microsoft\.Compute/locations/[^/]+/operations/([^/]+)$", path)
    if m:
        o = ops.get(m.group(2))
        if m.group(1) != SUB or o is None or h.command != "GET":
            reject(404, "NotFound", "no such operation")
        ended = step(o)
        if q.get("monitor") == "true":
            if not ended:
                raise Answer(202, b"", {"Retry-After": "0", "Location": op_urls(h, m.group(2))[1]})
            raise Answer(200, o["result"] or {})
        if not ended:
            raise Answer(200, {"status": "InProgress"}, {"Retry-After": "0"})
        if o["fail"] is not None:
            raise Answer(200, {"status": "Failed", "error": o["fail"]})
        raise Answer(200, {"status": "Succeeded"})
    m = re.match(GROUP + r"(/.*)$", path)
    if not m:
        reject(404, "InvalidResourceType", path)
    if m.group(1) != SUB:
        reject(404, "SubscriptionNotFound", "The subscription '%s' could not be found." % m.group(1))
    rg, rest = m.group(2), m.group(3)
    if rest == "/disks/" + DISK_NAME and rg == DISK_RG and h.command == "GET":
        raise Answer(200, {"name": DISK_NAME, "id": disk_id(), "location": LOCATION,
                           "properties": {"diskSizeGB": 1, "diskSizeBytes": len(DISK_DATA),
                                          "provisioningState": "Succeeded", "diskState": "Attached"}})
    if rg != SNAP_RG:
        reject(404, "ResourceNotFound", "%s %s" % (rg, rest))
    if rest == "/snapshots" and h.command == "GET":
        names = sorted(snapshots)
        at = int(q.get("$skiptoken", "0"))
        ans = {"value": [snap_json(snapshots[n]) for n in names[at:at + PAGE]]}
        if len(names) > at + PAGE:
            ans["nextLink"] = "https://%s%s?api-version=%s&$skiptoken=%d" % (
                h.tunnel_host, path, API, at + PAGE)
        raise Answer(200, ans)
    m = re.match(r"^/snapshots/([^/]+)(/beginGetAccess|/endGetAccess)?$", rest)
    if not m:
        reject(404, "ResourceNotFound", rest)
    name, action = m.group(1), m.group(2)
    s = snapshots.get(name)
    if action is None and h.command == "PUT":
        create(h, name, body)
    if s is None:
        reject(404, "ResourceNotFound", "The Resource 'Microsoft.Compute/snapshots/%s' was not found." % name)
    if action is None and h.command == "GET":
        raise Answer(200, snap_json(s))
    if action is None and h.command == "DELETE":
        if s["diskState"] == "ActiveSAS":
            reject(409, "OperationNotAllowed", "Snapshot %s has an active SAS URI." % name)
        oid = new_op(effect=lambda: snapshots.pop(name, None))
        raise Answer(202, b"", {"Location": op_urls(h, oid)[1], "Retry-After": "0"})
    if action == "/beginGetAccess" and h.command == "POST":
        j = json.loads(body or b"{}")
        if j.get("access") != "Read" or not isinstance(j.get("durationInSeconds"), int) \
                or not 300 <= j["durationInSeconds"] <= 604800:
            reject(400, "InvalidParameter", "grant %r" % j)
        if s["state"] != "Succeeded":
            reject(409, "OperationNotAllowed", "snapshot not ready")
        sig = secrets.token_urlsafe(24)
        sas = "https://%s/%s/abcd?sv=2018-03-28&sr=b&si=%s&sig=%s" % (
            BLOB_HOST, name, secrets.token_hex(4), urllib.parse.quote(sig, safe=""))
        def grant():
            s["sas"], s["diskState"] = sig, "ActiveSAS"
        fail = None
        if take_fault("grantfail"):
            fail = {"code": "InternalExecutionError", "message": "An internal execution error occurred."}
        oid = new_op(effect=grant, result={"accessSAS": sas}, fail=fail)
        status_url, monitor = op_urls(h, oid)
        raise Answer(202, b"", {"Azure-AsyncOperation": status_url, "Location": monitor,
                                 "Retry-After": "0"})
    if action == "/endGetAccess" and h.command == "POST":
        if body:
            reject(400, "InvalidRequestContent", "endGetAccess takes no body")
        def revoke():
            s["sas"] = None
            if s["diskState"] == "ActiveSAS":
                s["diskState"] = "Unattached"
        oid = new_op(effect=revoke)
        raise Answer(202, b"", {"Location": op_urls(h, oid)[1], "Retry-After": "0"})
    reject(405, "MethodNotAllowed", "%s %s" % (h.command, rest))

def create(h, name, body):
    try:
        j = json.loads(body)
    except ValueError:
        reject(400, "InvalidRequestContent", "not JSON")
    if not name.startswith(DISK_NAME + "-") or not re.fullmatch(r"\d{14}", name[len(DISK_NAME) + 1:]):
        reject(400, "InvalidParameter", "snapshot name %r is not {disk}-{YYYYmmddHHMMSS}" % name)
    cd = j.get("properties", {}).get("creationData", {})
    if j.get("location") != LOCATION or cd.get("createOption") != "Copy" \
            or cd.get("sourceResourceId") != disk_id():
        reject(400, "InvalidParameter", "creationData/location %r" % j)
    tags = j.get("tags") or {}
    try:
        ts = float(tags.get("timestamp"))
    except (TypeError, ValueError):
        reject(400, "InvalidParameter", "timestamp tag %r" % tags.get("timestamp"))
    if set(tags) != {"source_resource_group", "source_disk_name", "timestamp", "created_by"} \
            or tags["source_resource_group"] != DISK_RG or tags["source_disk_name"] != DISK_NAME \
            or tags["created_by"] != "backups" or abs(ts - time.time()) > 300:
        reject(400, "InvalidParameter", "tags %r" % tags)
    if name in snapshots:
        reject(409, "Conflict", "snapshot exists")
    s = snapshots[name] = {"name": name, "tags": tags, "state": "Creating", "data": DISK_DATA,
                           "diskState": "Unattached", "sas": None}
    fail = None
    if take_fault("createfail"):
        fail = {"code": "InternalDiskManagementError",
                "message": "An internal disk management error occurred."}
    def done():
        s["state"] = "Succeeded"
    oid = new_op(effect=done, fail=fail)
    if fail is not None:
        s["state"] = "Failed"
    raise Answer(201, snap_json(s), {"Azure-AsyncOperation": op_urls(h, oid)[0], "Retry-After": "0"})

# ---- Blob: the snapshot through its SAS ----

def blob(h, url, q):
    parts = url.path.strip("/").split("/")
    with lock:
        s = snapshots.get(parts[0]) if len(parts) == 2 else None
        ok = s is not None and s["sas"] is not None and q.get("sig") == s["sas"] \
            and q.get("sr") == "b" and "sv" in q
        if not ok:
            errors.append("403 AuthenticationFailed %s" % url.path)
            return h.reply(403, b"", {"x-ms-error-code": "AuthenticationFailed"})
        data = s["data"]
    if h.command == "HEAD":
        h.send_response(200)
        h.send_header("Content-Length", str(len(data)))
        h.send_header("x-ms-blob-type", "PageBlob")
        h.end_headers()
        return
    if q.get("comp") == "pagelist":
        return page_list(h, q, data)
    rng = h.headers.get("Range") or h.headers.get("x-ms-range")
    lo, hi = 0, len(data) - 1
    if rng:
        m = re.fullmatch(r"bytes=(\d+)-(\d*)", rng)
        if m is None or int(m.group(1)) >= len(data):
            return h.reply(416, b"", {"Content-Range": "bytes */%d" % len(data)})
        lo = int(m.group(1))
        hi = min(int(m.group(2)) if m.group(2) else len(data) - 1, len(data) - 1)
    with lock:
        f503 = next((f for f in faults if f["kind"] == "blob503" and f["times"] > 0
                     and lo >= f["from"]), None)
        if f503:
            f503["times"] -= 1
        drop = next((f for f in faults if f["kind"] == "blobdrop" and f["times"] > 0
                     and lo <= f["at"] <= hi), None)
        if drop:
            drop["times"] -= 1
        stall = take_fault("blobstall")
    if f503:
        return h.reply(503, b"", {"x-ms-error-code": "ServerBusy"})
    h.send_response(206 if rng else 200)
    if rng:
        h.send_header("Content-Range", "bytes %d-%d/%d" % (lo, hi, len(data)))
    h.send_header("Content-Length", str(hi - lo + 1))
    h.send_header("x-ms-blob-type", "PageBlob")
    h.end_headers()
    if stall:
        h.wfile.write(data[lo:lo + (1 << 20)])
        h.wfile.flush()
        time.sleep(60)
        h.close_connection = True
        return
    if drop:
        # The connection dies part-way through the body.
        h.wfile.write(data[lo:drop["at"]])
        h.wfile.flush()
        h.close_connection = True
        h.connection.close()
        return
    h.wfile.write(data[lo:hi + 1])
    h.wfile.flush()

Handler.tls = server_tls(a.cert, a.key)
PAGE_LIST_PART = 2  # ranges per page-list answer, so the client must follow NextMarker

def page_list(h, q, data):
    """Get Page Ranges: the written (here: not all-zero) 512-byte pages within x-ms-range,
    merged, PAGE_LIST_PART ranges per answer."""
    if h.headers.get("x-ms-version", "") < "2020-10-02":
        return h.reply(400, b"", {"x-ms-error-code": "InvalidHeaderValue"})
    with lock:
        if take_fault("nopagelist"):
            return h.reply(400, b"", {"x-ms-error-code": "InvalidQueryParameterValue"})
    m = re.fullmatch(r"bytes=(\d+)-(\d+)", h.headers.get("x-ms-range", ""))
    if m is None or int(m.group(1)) % 512 or (int(m.group(2)) + 1) % 512 and int(m.group(2)) + 1 != len(data):
        return h.reply(400, b"", {"x-ms-error-code": "InvalidPageRange"})
    lo, hi = int(m.group(1)), min(int(m.group(2)), len(data) - 1)
    ranges = []
    for p in range(lo, hi + 1, 512):
        if data[p:min(p + 512, hi + 1)].strip(b"\0"):
            end = min(p + 512, hi + 1) - 1
            if ranges and ranges[-1][1] == p - 1:
                ranges[-1][1] = end
            else:
                ranges.append([p, end])
    at = int(q.get("marker", "0"))
    part = ranges[at:at + PAGE_LIST_PART]
    xml = '<?xml version="1.0" encoding="utf-8"?><PageList>' + "".join(
        "<PageRange><Start>%d</Start><End>%d</End></PageRange>" % (a, b) for a, b in part)
    if len(ranges) > at + PAGE_LIST_PART:
        xml += "<NextMarker>%d</NextMarker>" % (at + PAGE_LIST_PART)
    xml += "</PageList>"
    h.reply(200, xml.encode(), {"Content-Type": "application/xml"})

srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
srv.daemon_threads = True
print("port=%d" % srv.server_address[1], flush=True)
srv.serve_forever()
