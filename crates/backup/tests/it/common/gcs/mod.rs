//! A local fake of Google Cloud Storage for the `gs` destination tests: the exact requests
//! opendal's gcs service sends (JSON API list, metadata, ranged media reads, media insert,
//! delete; XML API multipart upload: initiate, parts, complete, abort, list uploads) and
//! the OAuth token endpoint of a service-account key, which checks the JWT's claims and its
//! RS256 signature with `openssl` against the key the test generated. Every storage request
//! must carry a token it issued. Anything else is answered 400 and recorded in
//! [`FakeGcs::unexpected`], so a test fails on a request the fake does not know.
//!
//! Why not an emulator: fake-gcs-server and gcp-storage-emulator (PyPI) serve the JSON API
//! only; neither has the XML multipart upload opendal streams large objects with.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

mod oauth;
pub use oauth::ServiceAccount;

/// An answer: status, content type, extra headers, body.
type Reply = (u16, &'static str, Vec<(&'static str, String)>, Vec<u8>);

#[derive(Clone)]
struct Object {
    data: Vec<u8>,
    generation: u64,
}

struct Upload {
    bucket: String,
    key: String,
    parts: BTreeMap<u32, (String, Vec<u8>)>,
}

#[derive(Default)]
struct State {
    buckets: BTreeMap<String, BTreeMap<String, Object>>,
    uploads: BTreeMap<String, Upload>,
    next_id: u64,
    tokens: Vec<String>,
    /// `METHOD path?query` of every request, in order.
    requests: Vec<String>,
    unexpected: Vec<String>,
    token_refusals: u64,
    /// Part number whose upload is answered `503` (an injected server failure).
    failing_part: Option<u32>,
    /// The accepted key: client email and public key file.
    account: Option<(String, PathBuf)>,
}

/// The fake server; it runs until the test process ends.
#[derive(Clone)]
pub struct FakeGcs {
    pub port: u16,
    state: Arc<Mutex<State>>,
    dir: Arc<tempfile::TempDir>,
}

impl FakeGcs {
    /// Starts the fake on a free 127.0.0.1 port with the given buckets.
    pub fn start(buckets: &[&str]) -> FakeGcs {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let mut st = State::default();
        for b in buckets {
            st.buckets.insert((*b).to_string(), BTreeMap::new());
        }
        let fake = FakeGcs {
            port,
            state: Arc::new(Mutex::new(st)),
            dir: Arc::new(tempfile::tempdir().expect("tempdir")),
        };
        let f = fake.clone();
        std::thread::spawn(move || {
            for c in listener.incoming().flatten() {
                let f = f.clone();
                std::thread::spawn(move || f.serve(c));
            }
        });
        fake
    }

    /// The value for `STORAGE_EMULATOR_HOST`.
    pub fn host(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The token endpoint, for a key's `token_uri`.
    pub fn token_uri(&self) -> String {
        format!("http://127.0.0.1:{}/token", self.port)
    }

    /// Accepts JWTs of this service account only.
    pub fn trust(&self, sa: &ServiceAccount) {
        self.state.lock().unwrap().account = Some((sa.email.clone(), sa.public_pem.clone()));
    }

    /// Answers the upload of part `n` of every multipart upload with `503`.
    pub fn fail_part(&self, n: u32) {
        self.state.lock().unwrap().failing_part = Some(n);
    }

    /// Object names in `bucket`, sorted.
    pub fn names(&self, bucket: &str) -> Vec<String> {
        let st = self.state.lock().unwrap();
        st.buckets[bucket].keys().cloned().collect()
    }

    pub fn object(&self, bucket: &str, name: &str) -> Option<Vec<u8>> {
        let st = self.state.lock().unwrap();
        st.buckets[bucket].get(name).map(|o| o.data.clone())
    }

    /// Stores an object directly (a copy made by an earlier run).
    pub fn put(&self, bucket: &str, name: &str, data: &[u8]) {
        let mut st = self.state.lock().unwrap();
        st.next_id += 1;
        let generation = st.next_id;
        st.buckets.get_mut(bucket).expect("bucket").insert(
            name.to_string(),
            Object {
                data: data.to_vec(),
                generation,
            },
        );
    }

    /// Incomplete multipart uploads: (bucket, key, parts uploaded).
    pub fn uploads(&self) -> Vec<(String, String, usize)> {
        let st = self.state.lock().unwrap();
        st.uploads
            .values()
            .map(|u| (u.bucket.clone(), u.key.clone(), u.parts.len()))
            .collect()
    }

    pub fn requests(&self) -> Vec<String> {
        self.state.lock().unwrap().requests.clone()
    }

    pub fn unexpected(&self) -> Vec<String> {
        self.state.lock().unwrap().unexpected.clone()
    }

    pub fn token_refusals(&self) -> u64 {
        self.state.lock().unwrap().token_refusals
    }

    pub fn tokens_issued(&self) -> Vec<String> {
        self.state.lock().unwrap().tokens.clone()
    }

    fn serve(&self, c: TcpStream) {
        let mut r = BufReader::new(c.try_clone().expect("clone"));
        let mut w = c;
        // One request per connection (`Connection: close` in every answer).
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or_default().to_string();
        let target = parts.next().unwrap_or_default().to_string();
        let mut headers = BTreeMap::new();
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
            }
        }
        let mut body = Vec::new();
        if headers
            .get("transfer-encoding")
            .is_some_and(|t| t.contains("chunked"))
        {
            loop {
                let mut size = String::new();
                if r.read_line(&mut size).unwrap_or(0) == 0 {
                    return;
                }
                let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
                let mut chunk = vec![0u8; n + 2];
                if r.read_exact(&mut chunk).is_err() {
                    return;
                }
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..n]);
            }
        } else if let Some(n) = headers.get("content-length") {
            body = vec![0u8; n.parse().unwrap_or(0)];
            if r.read_exact(&mut body).is_err() {
                return; // the client went away mid-body
            }
        }
        let (status, ctype, extra, out) = self.handle(&method, &target, &headers, &body);
        let reason = match status {
            200 => "OK",
            204 => "No Content",
            206 => "Partial Content",
            400 => "Bad Request",
            401 => "Unauthorized",
            404 => "Not Found",
            412 => "Precondition Failed",
            503 => "Service Unavailable",
            _ => "Status",
        };
        let mut head = format!(
            "HTTP/1.1 {status} {reason}\r\nContent-Length: {}\r\nConnection: close\r\n",
            out.len()
        );
        if !ctype.is_empty() {
            head.push_str(&format!("Content-Type: {ctype}\r\n"));
        }
        for (k, v) in extra {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        let _ = w.write_all(head.as_bytes());
        let _ = w.write_all(&out);
        let _ = w.flush();
    }

    fn handle(
        &self,
        method: &str,
        target: &str,
        headers: &BTreeMap<String, String>,
        body: &[u8],
    ) -> Reply {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let q = parse_query(query);
        let mut st = self.state.lock().unwrap();
        st.requests.push(format!("{method} {target}"));
        if method == "POST" && path == "/token" {
            drop(st);
            return self.token(body);
        }
        let auth = headers.get("authorization").cloned().unwrap_or_default();
        let authorized = auth
            .strip_prefix("Bearer ")
            .is_some_and(|t| st.tokens.iter().any(|i| i == t));
        if !authorized {
            return json_error(401, "Invalid Credentials");
        }
        let segs: Vec<String> = path
            .trim_start_matches('/')
            .split('/')
            .map(decode)
            .collect();
        let seg = |i: usize| segs.get(i).map(String::as_str).unwrap_or_default();
        let unexpected = |st: &mut State| {
            st.unexpected.push(format!("{method} {target}"));
            json_error(400, "the fake does not know this request")
        };
        // JSON API.
        if seg(0) == "storage" && seg(1) == "v1" && seg(2) == "b" && seg(4) == "o" {
            let bucket = seg(3).to_string();
            if !st.buckets.contains_key(&bucket) {
                return json_error(404, "The specified bucket does not exist.");
            }
            let name = segs.get(5..).map(|s| s.join("/")).unwrap_or_default();
            let objects = st.buckets.get_mut(&bucket).expect("bucket");
            return match (method, name.is_empty()) {
                ("GET", true) => list(objects, &bucket, &q),
                ("GET", false) => match objects.get(&name) {
                    None => json_error(404, "No such object"),
                    Some(o) if q.get("alt").map(String::as_str) == Some("media") => {
                        media(o, headers.get("range"))
                    }
                    Some(o) => (200, "application/json", vec![], resource(&bucket, &name, o)),
                },
                ("DELETE", false) => match objects.remove(&name) {
                    Some(_) => (204, "", vec![], vec![]),
                    None => json_error(404, "No such object"),
                },
                _ => unexpected(&mut st),
            };
        }
        if method == "POST"
            && seg(0) == "upload"
            && seg(1) == "storage"
            && seg(2) == "v1"
            && seg(3) == "b"
            && seg(5) == "o"
            && q.get("uploadType").map(String::as_str) == Some("media")
        {
            let bucket = seg(4).to_string();
            let Some(name) = q.get("name").cloned() else {
                return unexpected(&mut st);
            };
            st.next_id += 1;
            let generation = st.next_id;
            let Some(objects) = st.buckets.get_mut(&bucket) else {
                return json_error(404, "The specified bucket does not exist.");
            };
            if q.get("ifGenerationMatch").map(String::as_str) == Some("0")
                && objects.contains_key(&name)
            {
                return json_error(
                    412,
                    "At least one of the pre-conditions you specified did not hold.",
                );
            }
            let o = Object {
                data: body.to_vec(),
                generation,
            };
            let out = resource(&bucket, &name, &o);
            objects.insert(name, o);
            return (200, "application/json", vec![], out);
        }
        // XML API: /{bucket}/{object}?uploads|partNumber&uploadId|uploadId, /{bucket}?uploads.
        let bucket = seg(0).to_string();
        if !st.buckets.contains_key(&bucket) {
            return unexpected(&mut st);
        }
        let key = segs[1..].join("/");
        if method == "GET" && key.is_empty() && q.contains_key("uploads") {
            let prefix = q.get("prefix").cloned().unwrap_or_default();
            let mut x = String::from(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?><ListMultipartUploadsResult>",
            );
            x.push_str(&format!("<Bucket>{bucket}</Bucket>"));
            for (id, u) in &st.uploads {
                if u.bucket == bucket && u.key.starts_with(&prefix) {
                    x.push_str(&format!(
                        "<Upload><Key>{}</Key><UploadId>{id}</UploadId><Initiated>2024-01-01T00:00:00.000Z</Initiated></Upload>",
                        u.key
                    ));
                }
            }
            x.push_str("<IsTruncated>false</IsTruncated></ListMultipartUploadsResult>");
            return (200, "application/xml", vec![], x.into_bytes());
        }
        if key.is_empty() {
            return unexpected(&mut st);
        }
        if method == "POST" && q.contains_key("uploads") && body.is_empty() {
            st.next_id += 1;
            let id = format!("upload-{}", st.next_id);
            st.uploads.insert(
                id.clone(),
                Upload {
                    bucket: bucket.clone(),
                    key: key.clone(),
                    parts: BTreeMap::new(),
                },
            );
            let x = format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><InitiateMultipartUploadResult><Bucket>{bucket}</Bucket><Key>{key}</Key><UploadId>{id}</UploadId></InitiateMultipartUploadResult>");
            return (200, "application/xml", vec![], x.into_bytes());
        }
        let Some(id) = q.get("uploadId").cloned() else {
            return unexpected(&mut st);
        };
        match st.uploads.get(&id) {
            Some(u) if u.bucket == bucket && u.key == key => {}
            _ => return xml_error(404, "NoSuchUpload"),
        }
        match method {
            "PUT" => {
                let Some(n) = q
                    .get("partNumber")
                    .and_then(|n| n.parse::<u32>().ok())
                    .filter(|n| (1..=10000).contains(n))
                else {
                    return unexpected(&mut st);
                };
                if st.failing_part == Some(n) {
                    return xml_error(503, "ServiceUnavailable");
                }
                let etag = format!("\"{}\"", hex(&Sha256::digest(body)[..16]));
                let u = st.uploads.get_mut(&id).expect("upload");
                u.parts.insert(n, (etag.clone(), body.to_vec()));
                (200, "", vec![("ETag", etag)], vec![])
            }
            "POST" => {
                let text = String::from_utf8_lossy(body);
                let listed: Vec<(u32, String)> = text
                    .split("<Part>")
                    .skip(1)
                    .map(|p| {
                        let n = between(p, "<PartNumber>", "</PartNumber>")
                            .parse()
                            .unwrap_or(0);
                        let e = between(p, "<ETag>", "</ETag>").replace("&quot;", "\"");
                        (n, e)
                    })
                    .collect();
                let u = st.uploads.get(&id).expect("upload");
                let known: Vec<(u32, String)> =
                    u.parts.iter().map(|(n, (e, _))| (*n, e.clone())).collect();
                let sizes_ok = u
                    .parts
                    .values()
                    .rev()
                    .skip(1)
                    .all(|(_, d)| d.len() >= 5 << 20);
                if listed.is_empty() || listed != known || !sizes_ok {
                    st.unexpected.push(format!(
                        "complete with parts {listed:?}, uploaded {known:?}"
                    ));
                    return xml_error(400, "InvalidPart");
                }
                let u = st.uploads.remove(&id).expect("upload");
                let data: Vec<u8> = u.parts.into_values().flat_map(|(_, d)| d).collect();
                st.next_id += 1;
                let generation = st.next_id;
                st.buckets
                    .get_mut(&bucket)
                    .expect("bucket")
                    .insert(key.clone(), Object { data, generation });
                let x = format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><CompleteMultipartUploadResult><Bucket>{bucket}</Bucket><Key>{key}</Key><ETag>\"x-{}\"</ETag></CompleteMultipartUploadResult>", listed.len());
                (200, "application/xml", vec![], x.into_bytes())
            }
            "DELETE" => {
                st.uploads.remove(&id);
                (204, "", vec![], vec![])
            }
            _ => unexpected(&mut st),
        }
    }
}

fn json_error(status: u16, message: &str) -> Reply {
    let v = json!({"error": {"code": status, "message": message, "errors": [{"message": message, "domain": "global", "reason": "fake"}]}});
    (
        status,
        "application/json",
        vec![],
        v.to_string().into_bytes(),
    )
}

fn xml_error(status: u16, code: &str) -> Reply {
    let x = format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code><Message>{code}</Message></Error>");
    (status, "application/xml", vec![], x.into_bytes())
}

fn resource(bucket: &str, name: &str, o: &Object) -> Vec<u8> {
    object_json(bucket, name, o).to_string().into_bytes()
}

fn object_json(bucket: &str, name: &str, o: &Object) -> Value {
    json!({
        "kind": "storage#object",
        "name": name,
        "bucket": bucket,
        "generation": o.generation.to_string(),
        "size": o.data.len().to_string(),
        "etag": format!("CKW{}=", o.generation),
        "md5Hash": "",
        "contentType": "application/octet-stream",
        "updated": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    })
}

/// objects.list with prefix, delimiter, maxResults and pageToken (the last name returned).
fn list(objects: &BTreeMap<String, Object>, bucket: &str, q: &BTreeMap<String, String>) -> Reply {
    let prefix = q.get("prefix").cloned().unwrap_or_default();
    let delimiter = q.get("delimiter").cloned().unwrap_or_default();
    let max: usize = q
        .get("maxResults")
        .and_then(|m| m.parse().ok())
        .unwrap_or(1000)
        .min(1000);
    let after = q.get("pageToken").cloned().unwrap_or_default();
    let mut items = Vec::new();
    let mut prefixes: Vec<String> = Vec::new();
    let mut next = None;
    for (name, o) in objects.range(after.clone()..) {
        if name == &after || !name.starts_with(&prefix) {
            continue;
        }
        if items.len() + prefixes.len() == max {
            next = Some(json!(items.last().map_or(after.clone(), |i: &Value| i
                ["name"]
                .as_str()
                .unwrap()
                .to_string())));
            break;
        }
        let rest = &name[prefix.len()..];
        if !delimiter.is_empty() {
            if let Some(i) = rest.find(&delimiter) {
                let p = format!("{prefix}{}", &rest[..i + delimiter.len()]);
                if !prefixes.contains(&p) {
                    prefixes.push(p);
                }
                continue;
            }
        }
        items.push(object_json(bucket, name, o));
    }
    let mut v = json!({"kind": "storage#objects", "items": items, "prefixes": prefixes});
    if let Some(t) = next {
        v["nextPageToken"] = t;
    }
    (200, "application/json", vec![], v.to_string().into_bytes())
}

/// alt=media, whole or one `bytes=a-b` range.
fn media(o: &Object, range: Option<&String>) -> Reply {
    let len = o.data.len();
    let Some(r) = range.and_then(|r| r.strip_prefix("bytes=")) else {
        return (200, "application/octet-stream", vec![], o.data.clone());
    };
    let (a, b) = r.split_once('-').unwrap_or((r, ""));
    let start: usize = a.parse().unwrap_or(0);
    let end: usize = b.parse::<usize>().map_or(len, |e| (e + 1).min(len));
    if start >= len || start >= end {
        return json_error(416, "range");
    }
    (
        206,
        "application/octet-stream",
        vec![("Content-Range", format!("bytes {start}-{}/{len}", end - 1))],
        o.data[start..end].to_vec(),
    )
}

fn between<'a>(s: &'a str, a: &str, b: &str) -> &'a str {
    s.split(a)
        .nth(1)
        .and_then(|r| r.split(b).next())
        .unwrap_or_default()
}

fn parse_query(q: &str) -> BTreeMap<String, String> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(&v.replace('+', " ")))
        })
        .collect()
}

/// Percent-decoding.
fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
