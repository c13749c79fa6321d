"""Fakes of the Backblaze B2, Dropbox and Google Drive (+ Google OAuth token) HTTP APIs
behind one HTTPS proxy, for the `b2`, `dropbox` and `gdrive` destination tests (no local
server exists for these services).

The binary under test runs with HTTPS_PROXY=http://127.0.0.1:PORT and SSL_CERT_FILE=<test CA>:
its client sends `CONNECT api.backblazeb2.com:443` (or any other API host) here, this script
answers 200, terminates TLS with CERT (a certificate the test CA signed for those hosts) and
serves the fake API of the requested host. Each API request is recorded (method, host, path,
query, headers, body digest and JSON body) for the test to assert, and checked the way the
real service checks it (credentials, tokens, offsets, part digests); wrong requests get the
service's error answer.

Plain requests to /_control/... (no CONNECT) drive the fake: GET requests (the record),
GET files?service=b2|dropbox|gdrive (what is stored), POST fault {host, path, [method],
status|drop|keep, times} (keep: a Drive upload holds only the first `keep` bytes it was sent)
(the next matching requests fail), POST put {service, name, data} (seed an object),
POST gdrive {expires_in} (lifetime of the access tokens issued from then on).

usage: saas_fake.py CERT KEY --b2 KEY_ID:KEY:BUCKET --dropbox TOKEN
                    --gdrive CLIENT_EMAIL:PUBLIC_KEY_PEM:FOLDER_ID
Prints `port=N` once listening on 127.0.0.1 (a free port)."""
import argparse, base64, hashlib, json, re, subprocess, tempfile, threading, time
import urllib.parse
from http.server import ThreadingHTTPServer

from tunnel import Answer, TunnelHandler, server_tls

p = argparse.ArgumentParser()
p.add_argument("cert"); p.add_argument("key")
p.add_argument("--b2", required=True); p.add_argument("--dropbox", required=True)
p.add_argument("--gdrive", required=True)
a = p.parse_args()
GD_EMAIL, GD_PUBKEY, GD_FOLDER = a.gdrive.split(":", 2)
B2_KEY_ID, B2_KEY, B2_BUCKET = a.b2.split(":", 2)
DBX_TOKEN = a.dropbox
B2_BUCKET_ID = "bkt0001"
B2_TOKEN, B2_UPLOAD_TOKEN = "b2-acct-token-1", "b2-upload-token-1"
B2_MIN_PART = 5 * 1000 * 1000


lock = threading.Lock()
record = []     # every API request, in order
faults = []     # {host, path, status | drop, times}
stuck = set()   # services whose listings repeat their cursor forever ("dropbox", "gdrive")
b2_files = {}   # name -> {id, data, ts, hidden}
b2_large = {}   # fileId -> {name, parts: {n: bytes}}
dbx_files = {}  # lower path -> {path, data, ts}
dbx_sessions = {}
gd_files = {GD_FOLDER: {"name": "backups", "parents": [], "mime": "application/vnd.google-apps.folder",
                        "data": b"", "ts": time.time()}}
gd_sessions = {}  # upload_id -> {name, parents, data}
gd_tokens = {}    # access token -> expiry (time.time())
gd_lifetime = [3599]
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

class Handler(TunnelHandler):
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
            "body_len": len(body), "body_sha1": sha1(body), "t": time.time(),
        }
        try:
            rec["json"] = json.loads(body) if body and len(body) < 65536 else None
        except ValueError:
            rec["json"] = None
        if self.headers.get("Content-Type", "").startswith("application/x-www-form-urlencoded"):
            rec["form"] = dict(urllib.parse.parse_qsl(body.decode()))
        with lock:
            record.append(rec)
            fault = None
            for f in faults:
                if f["times"] > 0 and f.get("host", self.tunnel_host) == self.tunnel_host \
                        and f.get("method", self.command) == self.command \
                        and f.get("path", "") in url.path:
                    f["times"] -= 1
                    fault = f
                    break
        self.keep = None
        if fault is not None and "keep" in fault:
            # Drive holds only the first `keep` bytes of this upload request.
            self.keep, fault = fault["keep"], None
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
                elif self.tunnel_host == "oauth2.googleapis.com":
                    google_token(self, url, body)
                elif self.tunnel_host == "www.googleapis.com":
                    drive(self, url, body)
                raise Answer(404, {"error": "no such host in the fake: " + self.tunnel_host})
        except Answer as ans:
            self.reply(ans.status, ans.body, ans.headers)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = handle_any

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
                elif f["service"] == "gdrive":
                    parent = GD_FOLDER
                    *dirs, base = f["name"].split("/")
                    for d in dirs:
                        found = [i for i, g in gd_files.items()
                                 if g["name"] == d and parent in g["parents"]]
                        if found:
                            parent = found[0]
                        else:
                            parent = gd_new(d, parent, FOLDER_MIME, b"")
                    gd_new(base, parent, "application/octet-stream", data)
                else:
                    dbx_files[f["name"].lower()] = {"path": f["name"], "data": data,
                                                    "ts": time.time()}
                return self.reply(200, {})
            if url.path == "/_control/stuck":
                stuck.add(json.loads(body)["service"])
                return self.reply(200, {})
            if url.path == "/_control/gdrive":
                gd_lifetime[0] = json.loads(body)["expires_in"]
                return self.reply(200, {})
            if url.path == "/_control/files" and q["service"] == "gdrive":
                files = {gd_path(i): {"size": len(f["data"]), "sha256": sha256(f["data"])}
                         for i, f in gd_files.items() if f["mime"] != FOLDER_MIME}
                folders = sorted(gd_path(i) for i, f in gd_files.items()
                                 if f["mime"] == FOLDER_MIME and i != GD_FOLDER)
                return self.reply(200, {"files": files, "folders": folders,
                                        "sessions": len(gd_sessions)})
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
    if "dropbox" in stuck:
        # A broken server: more to come, always under the same cursor.
        raise Answer(200, {"entries": entries[:1], "has_more": True,
                           "cursor": base64.b64encode(json.dumps(dict(c, at=0)).encode()).decode()})
    raise Answer(200, {"entries": entries[at:at + PAGE], "has_more": len(entries) > at + PAGE,
                       "cursor": base64.b64encode(json.dumps(dict(c, at=at + PAGE)).encode()).decode()})

# ---- Google OAuth token endpoint and Drive API v3 ----

FOLDER_MIME = "application/vnd.google-apps.folder"
GD_PAGE = 3  # files per list answer, so the tests cover nextPageToken

def google_error(status, message):
    raise Answer(status, {"error": {"code": status, "message": message}})

def unb64(x):
    return base64.urlsafe_b64decode(x + "=" * (-len(x) % 4))

def google_token(h, url, body):
    """The JWT-bearer grant: the assertion must be an RS256 JWT signed by the service
    account's key (checked with openssl against its public key) with the right claims."""
    form = dict(urllib.parse.parse_qsl(body.decode()))
    bad = lambda why: Answer(400, {"error": "invalid_grant", "error_description": why})
    if url.path != "/token" or form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
        raise bad("grant_type")
    try:
        head, claims, sig = form["assertion"].split(".")
        header, c = json.loads(unb64(head)), json.loads(unb64(claims))
        signature = unb64(sig)
    except (KeyError, ValueError):
        raise bad("not a JWT")
    with tempfile.NamedTemporaryFile() as d, tempfile.NamedTemporaryFile() as s:
        d.write((head + "." + claims).encode()); d.flush()
        s.write(signature); s.flush()
        ok = subprocess.run(["openssl", "dgst", "-sha256", "-verify", GD_PUBKEY, "-signature",
                             s.name, d.name], capture_output=True).returncode == 0
    if not ok or header.get("alg") != "RS256":
        raise bad("Invalid JWT Signature.")
    now = time.time()
    if c.get("iss") != GD_EMAIL or c.get("aud") != "https://oauth2.googleapis.com/token" \
            or c.get("scope") != "https://www.googleapis.com/auth/drive" \
            or not (c["iat"] - 60 <= now <= c["exp"]) or c["exp"] - c["iat"] > 3600:
        raise bad("claims")
    token = next_id("ya29.fake-")
    gd_tokens[token] = now + gd_lifetime[0]
    raise Answer(200, {"access_token": token, "expires_in": gd_lifetime[0], "token_type": "Bearer"})

def gd_new(name, parent, mime, data):
    fid = next_id("gd")
    gd_files[fid] = {"name": name, "parents": [parent], "mime": mime, "data": data,
                     "ts": time.time()}
    return fid

def gd_path(fid):
    f, parts = gd_files[fid], []
    while fid != GD_FOLDER:
        parts.append(f["name"])
        fid = f["parents"][0]
        f = gd_files[fid]
    return "/".join(reversed(parts))

def gd_meta(fid):
    f = gd_files[fid]
    m = {"id": fid, "name": f["name"], "mimeType": f["mime"],
         "modifiedTime": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(f["ts"]))}
    if f["mime"] != FOLDER_MIME:
        m["size"] = str(len(f["data"]))
    return m

QUOTED = r"'((?:[^'\\]|\\.)*)'"
QUERY = re.compile(QUOTED + r" in parents and trashed = false(?: and name = " + QUOTED +
                   r")?(?: and mimeType = " + QUOTED + r")?")

def unquote_q(s):
    return re.sub(r"\\(.)", r"\1", s) if s is not None else None

def drive(h, url, body):
    auth = h.headers.get("Authorization", "")
    if not auth.startswith("Bearer ") or gd_tokens.get(auth[7:], 0) < time.time():
        google_error(401, "Request had invalid authentication credentials.")
    q, path = dict(urllib.parse.parse_qsl(url.query)), url.path
    if q.get("supportsAllDrives") != "true":
        google_error(400, "supportsAllDrives missing")
    if path == "/drive/v3/files" and h.command == "GET":
        m = QUERY.fullmatch(q.get("q", ""))
        if m is None or q.get("includeItemsFromAllDrives") != "true":
            google_error(400, "unexpected query: %r" % q.get("q"))
        parent, name, mime = (unquote_q(g) for g in m.groups())
        found = sorted(i for i, f in gd_files.items() if parent in f["parents"]
                       and (name is None or f["name"] == name) and (mime is None or f["mime"] == mime))
        at = int(q.get("pageToken", "0"))
        size = min(int(q.get("pageSize", 100)), GD_PAGE)
        ans = {"files": [gd_meta(i) for i in found[at:at + size]]}
        if len(found) > at + size:
            ans["nextPageToken"] = str(at + size)
        if "gdrive" in stuck:
            ans["nextPageToken"] = q.get("pageToken", "0")
        raise Answer(200, ans)
    if path == "/drive/v3/files" and h.command == "POST":
        j = json.loads(body)
        if j.get("mimeType") != FOLDER_MIME or len(j.get("parents", [])) != 1 \
                or gd_files.get(j["parents"][0], {}).get("mime") != FOLDER_MIME:
            google_error(400, "bad folder")
        raise Answer(200, gd_meta(gd_new(j["name"], j["parents"][0], FOLDER_MIME, b"")))
    if path.startswith("/drive/v3/files/"):
        fid = path.rsplit("/", 1)[1]
        if fid not in gd_files:
            google_error(404, "File not found: %s." % fid)
        if h.command == "DELETE":
            for child in [i for i, f in gd_files.items() if fid in f["parents"]]:
                del gd_files[child]
            del gd_files[fid]
            raise Answer(204, b"")
        if q.get("alt") == "media":
            return serve_range(h, gd_files[fid]["data"], {})
        raise Answer(200, gd_meta(fid))
    if path == "/upload/drive/v3/files" and q.get("uploadType") == "resumable":
        if h.command == "POST":
            j = json.loads(body)
            if h.headers.get("X-Upload-Content-Type") is None or len(j.get("parents", [])) != 1 \
                    or gd_files.get(j["parents"][0], {}).get("mime") != FOLDER_MIME:
                google_error(400, "bad upload start")
            sid = next_id("up")
            gd_sessions[sid] = {"name": j["name"], "parent": j["parents"][0], "data": bytearray()}
            raise Answer(200, b"", {"Location": "https://www.googleapis.com/upload/drive/v3/files?"
                                    "uploadType=resumable&supportsAllDrives=true&upload_id=" + sid})
        s = gd_sessions.get(q.get("upload_id"))
        if s is None:
            google_error(404, "no such upload session")
        if h.command == "DELETE":
            del gd_sessions[q["upload_id"]]
            raise Answer(499, b"")
        m = re.fullmatch(r"bytes (?:(\d+)-(\d+)|\*)/(\d+|\*)", h.headers.get("Content-Range", ""))
        if m is None:
            google_error(400, "Content-Range")
        lo, hi, total = m.groups()
        if lo is not None and (int(lo) != len(s["data"]) or int(hi) - int(lo) + 1 != len(body)):
            google_error(400, "chunk does not continue the upload")
        if h.keep is not None:
            s["data"].extend(body[:h.keep])
            raise Answer(308, b"", {"Range": "bytes=0-%d" % (len(s["data"]) - 1)}
                         if s["data"] else {})
        if total == "*" and len(body) % (256 * 1024):
            google_error(400, "chunk size must be a multiple of 256 KiB")
        s["data"].extend(body)
        if total == "*":
            raise Answer(308, b"", {"Range": "bytes=0-%d" % (len(s["data"]) - 1)})
        if int(total) != len(s["data"]):
            google_error(400, "total size mismatch")
        del gd_sessions[q["upload_id"]]
        raise Answer(200, gd_meta(gd_new(s["name"], s["parent"], "application/octet-stream",
                                          bytes(s["data"]))))
    google_error(400, "unknown call %s %s" % (h.command, path))

Handler.tls = server_tls(a.cert, a.key)
srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
srv.daemon_threads = True
print("port=%d" % srv.server_address[1], flush=True)
srv.serve_forever()
