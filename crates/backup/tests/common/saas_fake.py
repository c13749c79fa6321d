"""Fakes of the Backblaze B2 and Dropbox HTTP APIs behind one HTTPS proxy, for the `b2` and
`dropbox` destination tests (no local server exists for these services).

The binary under test runs with HTTPS_PROXY=http://127.0.0.1:PORT and SSL_CERT_FILE=<test CA>:
its client sends `CONNECT api.backblazeb2.com:443` (or any other API host) here, this script
answers 200, terminates TLS with CERT (a certificate the test CA signed for those hosts) and
serves the fake API of the requested host. Each API request is recorded (method, host, path,
query, headers, body digest and JSON body) for the test to assert, and checked the way the
real service checks it (credentials, tokens, offsets, part digests); wrong requests get the
service's error answer.

Plain requests to /_control/... (no CONNECT) drive the fake: GET requests (the record),
GET files?service=b2|dropbox (what is stored), POST fault {host, path, status|drop, times}
(the next matching requests fail), POST put {service, name, data} (seed an object).

usage: saas_fake.py CERT KEY --b2 KEY_ID:KEY:BUCKET --dropbox TOKEN
Prints `port=N` once listening on 127.0.0.1 (a free port)."""
import argparse, base64, hashlib, json, ssl, sys, threading, time, urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

p = argparse.ArgumentParser()
p.add_argument("cert"); p.add_argument("key")
p.add_argument("--b2", required=True); p.add_argument("--dropbox", required=True)
a = p.parse_args()
B2_KEY_ID, B2_KEY, B2_BUCKET = a.b2.split(":", 2)
DBX_TOKEN = a.dropbox
B2_BUCKET_ID = "bkt0001"
B2_TOKEN, B2_UPLOAD_TOKEN = "b2-acct-token-1", "b2-upload-token-1"
B2_MIN_PART = 5 * 1000 * 1000

TLS = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
TLS.load_cert_chain(a.cert, a.key)

lock = threading.Lock()
record = []     # every API request, in order
faults = []     # {host, path, status | drop, times}
b2_files = {}   # name -> {id, data, ts, hidden}
b2_large = {}   # fileId -> {name, parts: {n: bytes}}
dbx_files = {}  # lower path -> {path, data, ts}
dbx_sessions = {}
counter = [0]

def next_id(prefix):
    counter[0] += 1
    return "%s%04d" % (prefix, counter[0])

def sha1(b):
    return hashlib.sha1(b).hexdigest()

def sha256(b):
    return hashlib.sha256(b).hexdigest()

def now_ms():
    return int(time.time() * 1000)

class Answer(Exception):
    """An API answer: status, JSON (or bytes) body, extra headers."""
    def __init__(self, status, body=None, headers=None):
        self.status, self.body, self.headers = status, body, headers or {}

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    tunnel_host = None

    def log_message(self, *args):
        pass

    def do_CONNECT(self):
        host = self.path.rsplit(":", 1)[0]
        self.send_response(200, "Connection established")
        self.end_headers()
        self.wfile.flush()
        try:
            tls = TLS.wrap_socket(self.connection, server_side=True)
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

    def body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def handle_any(self):
        body = self.body()
        if self.tunnel_host is None:
            return self.control(body)
        url = urllib.parse.urlsplit(self.path)
        rec = {
            "method": self.command, "host": self.tunnel_host, "path": url.path,
            "query": dict(urllib.parse.parse_qsl(url.query)),
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body_len": len(body), "body_sha1": sha1(body),
        }
        try:
            rec["json"] = json.loads(body) if body and len(body) < 65536 else None
        except ValueError:
            rec["json"] = None
        with lock:
            record.append(rec)
            fault = None
            for f in faults:
                if f["times"] > 0 and f.get("host", self.tunnel_host) == self.tunnel_host \
                        and f.get("path", "") in url.path:
                    f["times"] -= 1
                    fault = f
                    break
        if fault is not None:
            if fault.get("drop"):
                # The connection dies before any answer.
                self.close_connection = True
                self.connection.close()
                return
            return self.reply(fault["status"], {"error": "injected", "status": fault["status"]})
        try:
            with lock:
                if self.tunnel_host.endswith("backblazeb2.com"):
                    b2(self, url, body)
                elif self.tunnel_host.endswith("dropboxapi.com"):
                    dropbox(self, url, body)
                raise Answer(404, {"error": "no such host in the fake: " + self.tunnel_host})
        except Answer as ans:
            self.reply(ans.status, ans.body, ans.headers)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = handle_any

    def reply(self, status, body, headers=None):
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

    def control(self, body):
        url = urllib.parse.urlsplit(self.path)
        q = dict(urllib.parse.parse_qsl(url.query))
        with lock:
            if url.path == "/_control/requests":
                return self.reply(200, record)
            if url.path == "/_control/fault":
                f = json.loads(body)
                f.setdefault("times", 1)
                faults.append(f)
                return self.reply(200, {})
            if url.path == "/_control/put":
                f = json.loads(body)
                data = f["data"].encode()
                if f["service"] == "b2":
                    b2_files[f["name"]] = {"id": next_id("4_z"), "data": data, "ts": now_ms(),
                                           "hidden": False}
                else:
                    dbx_files[f["name"].lower()] = {"path": f["name"], "data": data,
                                                    "ts": time.time()}
                return self.reply(200, {})
            if url.path == "/_control/files":
                if q["service"] == "b2":
                    files = {n: {"size": len(f["data"]), "sha256": sha256(f["data"]),
                                 "hidden": f["hidden"]} for n, f in b2_files.items()}
                    return self.reply(200, {"files": files, "unfinished": len(b2_large)})
                files = {f["path"]: {"size": len(f["data"]), "sha256": sha256(f["data"])}
                         for f in dbx_files.values()}
                return self.reply(200, {"files": files, "sessions": len(dbx_sessions)})
        self.reply(404, {"error": "no such control"})

# ---- Backblaze B2 (native API v2) ----

def b2_error(status, code, message):
    raise Answer(status, {"status": status, "code": code, "message": message})

def b2_info(name, f):
    return {"accountId": "acct1", "action": "upload", "bucketId": B2_BUCKET_ID,
            "contentLength": len(f["data"]), "contentSha1": sha1(f["data"]),
            "contentType": "application/octet-stream", "fileId": f["id"], "fileInfo": {},
            "fileName": name, "uploadTimestamp": f["ts"]}

def b2(h, url, body):
    path, q, hd = url.path, dict(urllib.parse.parse_qsl(url.query)), h.headers
    auth = hd.get("Authorization", "")
    if path == "/b2api/v2/b2_authorize_account":
        want = "Basic " + base64.b64encode(("%s:%s" % (B2_KEY_ID, B2_KEY)).encode()).decode()
        if auth != want:
            b2_error(401, "unauthorized", "invalid application key id or key")
        raise Answer(200, {
            "accountId": "acct1", "authorizationToken": B2_TOKEN,
            "apiUrl": "https://api001.backblazeb2.com",
            "downloadUrl": "https://f001.backblazeb2.com",
            "recommendedPartSize": 100000000, "absoluteMinimumPartSize": 5000000,
            "allowed": {"bucketId": None, "bucketName": None, "capabilities": ["listBuckets"]}})
    upload = "/b2_upload_file/" in path or "/b2_upload_part/" in path
    if auth != (B2_UPLOAD_TOKEN if upload else B2_TOKEN):
        b2_error(401, "bad_auth_token", "invalid authorization token")
    j = json.loads(body) if body and not upload else {}
    if path == "/b2api/v2/b2_list_buckets":
        if j.get("accountId") != "acct1":
            b2_error(400, "bad_request", "accountId")
        found = [{"accountId": "acct1", "bucketId": B2_BUCKET_ID, "bucketName": B2_BUCKET,
                  "bucketType": "allPrivate"}] if j.get("bucketName") == B2_BUCKET else []
        raise Answer(200, {"buckets": found})
    if path.startswith("/file/"):
        bucket, name = path[len("/file/"):].split("/", 1)
        name = urllib.parse.unquote(name)
        f = b2_files.get(name)
        if bucket != B2_BUCKET or f is None or f["hidden"]:
            b2_error(404, "not_found", "file not present: " + name)
        return serve_range(h, f["data"], {"x-bz-file-name": urllib.parse.quote(name),
                                          "x-bz-file-id": f["id"],
                                          "x-bz-content-sha1": sha1(f["data"])})
    if path == "/b2api/v2/b2_get_upload_url":
        if q.get("bucketId") != B2_BUCKET_ID:
            b2_error(400, "bad_request", "bucketId")
        raise Answer(200, {"bucketId": B2_BUCKET_ID, "authorizationToken": B2_UPLOAD_TOKEN,
                           "uploadUrl": "https://pod-000-1001-01.backblazeb2.com/b2api/v2/b2_upload_file/%s/c001" % B2_BUCKET_ID})
    if path.startswith("/b2api/v2/b2_upload_file/"):
        name = urllib.parse.unquote(hd["X-Bz-File-Name"])
        check_sha1(hd, body)
        f = b2_files[name] = {"id": next_id("4_z"), "data": body, "ts": now_ms(), "hidden": False}
        raise Answer(200, b2_info(name, f))
    if path == "/b2api/v2/b2_start_large_file":
        if j.get("bucketId") != B2_BUCKET_ID:
            b2_error(400, "bad_request", "bucketId")
        fid = next_id("4_zlarge")
        b2_large[fid] = {"name": j["fileName"], "parts": {}}
        raise Answer(200, {"fileId": fid, "fileName": j["fileName"], "bucketId": B2_BUCKET_ID,
                           "contentType": j.get("contentType"), "action": "start"})
    if path == "/b2api/v2/b2_get_upload_part_url":
        if q.get("fileId") not in b2_large:
            b2_error(400, "bad_request", "no such large file")
        raise Answer(200, {"fileId": q["fileId"], "authorizationToken": B2_UPLOAD_TOKEN,
                           "uploadUrl": "https://pod-000-1001-02.backblazeb2.com/b2api/v2/b2_upload_part/%s/0001" % q["fileId"]})
    if path.startswith("/b2api/v2/b2_upload_part/"):
        fid = path.split("/")[4]
        if fid not in b2_large:
            b2_error(400, "bad_request", "no such large file")
        n = int(hd["X-Bz-Part-Number"])
        digest = check_sha1(hd, body)
        b2_large[fid]["parts"][n] = body
        raise Answer(200, {"fileId": fid, "partNumber": n, "contentLength": len(body),
                           "contentSha1": digest})
    if path == "/b2api/v2/b2_finish_large_file":
        up = b2_large.get(j.get("fileId"))
        if up is None:
            b2_error(400, "bad_request", "no such large file")
        parts = [up["parts"][n] for n in sorted(up["parts"])]
        if sorted(up["parts"]) != list(range(1, len(parts) + 1)) or len(parts) < 2:
            b2_error(400, "bad_request", "parts must be 1..n, at least two")
        if any(len(x) < B2_MIN_PART for x in parts[:-1]):
            b2_error(400, "bad_request", "part smaller than the minimum")
        if j.get("partSha1Array") != [sha1(x) for x in parts]:
            b2_error(400, "bad_request", "partSha1Array does not match the parts")
        del b2_large[j["fileId"]]
        f = b2_files[up["name"]] = {"id": j["fileId"], "data": b"".join(parts), "ts": now_ms(),
                                    "hidden": False}
        raise Answer(200, b2_info(up["name"], f))
    if path == "/b2api/v2/b2_cancel_large_file":
        up = b2_large.pop(j.get("fileId"), None)
        if up is None:
            b2_error(400, "bad_request", "no such large file")
        raise Answer(200, {"fileId": j["fileId"], "fileName": up["name"], "accountId": "acct1",
                           "bucketId": B2_BUCKET_ID})
    if path == "/b2api/v2/b2_list_file_names":
        if q.get("bucketId") != B2_BUCKET_ID:
            b2_error(400, "bad_request", "bucketId")
        prefix, start = q.get("prefix", ""), q.get("startFileName", "")
        delim, count = q.get("delimiter"), min(int(q.get("maxFileCount", 100)), 1000)
        out, seen = [], set()
        names = sorted(n for n, f in b2_files.items() if not f["hidden"] and n.startswith(prefix)
                       and n >= start)
        for n in names:
            if delim:
                rest = n[len(prefix):]
                if delim in rest:
                    folder = prefix + rest.split(delim)[0] + delim
                    if folder not in seen:
                        seen.add(folder)
                        out.append({"action": "folder", "fileName": folder, "contentLength": 0,
                                    "fileId": None, "fileInfo": {}, "uploadTimestamp": 0})
                    continue
            out.append(b2_info(n, b2_files[n]))
        nxt = out[count]["fileName"] if len(out) > count else None
        raise Answer(200, {"files": out[:count], "nextFileName": nxt})
    if path == "/b2api/v2/b2_hide_file":
        f = b2_files.get(j.get("fileName"))
        if j.get("bucketId") != B2_BUCKET_ID or f is None or f["hidden"]:
            b2_error(400, "no_such_file", "no such file: %s" % j.get("fileName"))
        f["hidden"] = True
        raise Answer(200, {"action": "hide", "fileName": j["fileName"], "fileId": next_id("4_zhide"),
                           "uploadTimestamp": now_ms(), "contentLength": 0})
    b2_error(400, "bad_request", "unknown call " + path)

def check_sha1(hd, body):
    """B2's checks of an upload; the contentSha1 it answers ("unverified:" when the client
    sent do_not_verify, as B2 does)."""
    given = hd.get("X-Bz-Content-Sha1")
    if given is None:
        b2_error(400, "bad_request", "X-Bz-Content-Sha1 missing")
    if given != "do_not_verify" and given != sha1(body):
        b2_error(400, "bad_request", "sha1 mismatch")
    if int(hd.get("Content-Length", -1)) != len(body):
        b2_error(400, "bad_request", "Content-Length mismatch")
    return ("unverified:" if given == "do_not_verify" else "") + sha1(body)

def serve_range(h, data, headers):
    rng = h.headers.get("Range")
    if rng and rng.startswith("bytes="):
        lo, hi = rng[len("bytes="):].split("-")
        lo = int(lo)
        hi = min(int(hi) if hi else len(data) - 1, len(data) - 1)
        headers["Content-Range"] = "bytes %d-%d/%d" % (lo, hi, len(data))
        raise Answer(206, data[lo:hi + 1], headers)
    raise Answer(200, data, headers)

# ---- Dropbox (API v2) ----

def dbx_error(summary, err):
    raise Answer(409, {"error_summary": summary + "/..", "error": err})

def dbx_meta(f):
    ts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(f["ts"]))
    return {".tag": "file", "name": f["path"].rsplit("/", 1)[1], "path_display": f["path"],
            "path_lower": f["path"].lower(), "id": "id:" + sha1(f["path"].encode())[:12],
            "client_modified": ts, "server_modified": ts, "rev": "015f0000000000000001",
            "size": len(f["data"]), "is_downloadable": True}

def dbx_folder(path):
    return {".tag": "folder", "name": path.rsplit("/", 1)[1], "path_display": path,
            "path_lower": path.lower(), "id": "id:" + sha1(path.encode())[:12]}

def dbx_list(path, recursive):
    """Entries under `path` (folders implied by the stored files), or None if absent."""
    base = path.rstrip("/").lower()
    entries, folders, found = [], set(), base == ""
    for low, f in sorted(dbx_files.items()):
        if not low.startswith(base + "/"):
            continue
        found = True
        rest = f["path"][len(base) + 1:].split("/")
        for i in range(1, len(rest)):
            folder = f["path"][:len(base) + 1 + len("/".join(rest[:i]))]
            if folder.lower() not in folders and (recursive or i == 1):
                folders.add(folder.lower())
                entries.append(dbx_folder(folder))
        if recursive or len(rest) == 1:
            entries.append(dbx_meta(f))
    return entries if found else None

def dbx_commit(commit, data):
    low = commit["path"].lower()
    if commit.get("mode", "add") == "add" and low in dbx_files and not commit.get("autorename"):
        dbx_error("path/conflict/file", {".tag": "path", "reason": {".tag": "conflict"}})
    f = dbx_files[low] = {"path": commit["path"], "data": data, "ts": time.time()}
    return dbx_meta(f)

def dbx_cursor(c):
    s = dbx_sessions.get(c["session_id"])
    if s is None:
        dbx_error("lookup_failed/not_found", {".tag": "lookup_failed"})
    if c["offset"] != len(s):
        dbx_error("lookup_failed/incorrect_offset",
                  {".tag": "lookup_failed", "lookup_failed": {".tag": "incorrect_offset",
                                                               "correct_offset": len(s)}})
    return s

PAGE = 3  # entries per list_folder answer, so the tests cover list_folder/continue

def dropbox(h, url, body):
    if h.headers.get("Authorization") != "Bearer " + DBX_TOKEN:
        raise Answer(401, {"error_summary": "invalid_access_token/..",
                           "error": {".tag": "invalid_access_token"}})
    path = url.path
    if h.tunnel_host == "content.dropboxapi.com":
        arg = json.loads(h.headers["Dropbox-API-Arg"])
        if path == "/2/files/download":
            f = dbx_files.get(arg["path"].lower())
            if f is None:
                dbx_error("path/not_found", {".tag": "path", "path": {".tag": "not_found"}})
            return serve_range(h, f["data"], {"Dropbox-API-Result": json.dumps(dbx_meta(f))})
        if path == "/2/files/upload":
            raise Answer(200, dbx_commit(arg, body))
        if path == "/2/files/upload_session/start":
            sid = next_id("sess")
            dbx_sessions[sid] = bytearray(body)
            raise Answer(200, {"session_id": sid})
        if path == "/2/files/upload_session/append_v2":
            dbx_cursor(arg["cursor"]).extend(body)
            raise Answer(200, None)
        if path == "/2/files/upload_session/finish":
            s = dbx_cursor(arg["cursor"])
            meta = dbx_commit(arg["commit"], bytes(s) + body)
            del dbx_sessions[arg["cursor"]["session_id"]]
            raise Answer(200, meta)
        raise Answer(400, {"error": "unknown content call " + path})
    j = json.loads(body) if body else {}
    if path == "/2/files/list_folder":
        entries = dbx_list(j["path"], j.get("recursive", False))
        if entries is None:
            dbx_error("path/not_found", {".tag": "path", "path": {".tag": "not_found"}})
        page(entries, 0, {"path": j["path"], "recursive": j.get("recursive", False)})
    if path == "/2/files/list_folder/continue":
        c = json.loads(base64.b64decode(j["cursor"]))
        page(dbx_list(c["path"], c["recursive"]) or [], c["at"], c)
    if path == "/2/files/get_metadata":
        f = dbx_files.get(j["path"].lower())
        if f is not None:
            raise Answer(200, dbx_meta(f))
        if dbx_list(j["path"], False) is not None:
            raise Answer(200, dbx_folder(j["path"].rstrip("/")))
        dbx_error("path/not_found", {".tag": "path", "path": {".tag": "not_found"}})
    if path == "/2/files/delete_v2":
        low = j["path"].lower()
        f = dbx_files.pop(low, None)
        if f is None:
            dbx_error("path_lookup/not_found", {".tag": "path_lookup",
                                                "path_lookup": {".tag": "not_found"}})
        raise Answer(200, {"metadata": dbx_meta(f)})
    if path == "/2/files/create_folder_v2":
        raise Answer(200, {"metadata": dbx_folder(j["path"])})
    raise Answer(400, {"error": "unknown call " + path})

def page(entries, at, c):
    raise Answer(200, {"entries": entries[at:at + PAGE], "has_more": len(entries) > at + PAGE,
                       "cursor": base64.b64encode(json.dumps(dict(c, at=at + PAGE)).encode()).decode()})

srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
srv.daemon_threads = True
print("port=%d" % srv.server_address[1], flush=True)
srv.serve_forever()
