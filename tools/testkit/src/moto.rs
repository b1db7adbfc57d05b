//! An S3-compatible object store on a free loopback port: `moto_server` from PyPI
//! (`moto[server]`, pinned in tools/python/requirements.txt and installed by `scripts/test`
//! into the virtualenv beside [`crate::python::python`]). It answers conditional writes
//! (`If-None-Match: *`, `If-Match`) with 412 as S3 does; it is started through
//! `moto_serial.py`, one request at a time, so that of two racing conditional writes only
//! one wins, as on S3.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The launcher that serves moto one request at a time.
const MOTO_SERIAL: &str = include_str!("moto_serial.py");

/// `moto_server` of the tools virtualenv.
pub fn moto_bin() -> PathBuf {
    crate::python::python()
        .parent()
        .map(|d| d.join("moto_server"))
        .unwrap_or_else(|| PathBuf::from("moto_server"))
}

/// A running moto_server, killed by PID when dropped.
#[derive(Debug)]
pub struct Moto {
    child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Its directory (`moto.log`).
    pub dir: tempfile::TempDir,
}

impl Moto {
    /// Starts one; panics (failing the test) when it cannot.
    pub fn start() -> Moto {
        Self::try_start().unwrap_or_else(|e| panic!("{e}"))
    }

    /// Starts one, or says why not.
    pub fn try_start() -> Result<Moto, String> {
        let bin = moto_bin();
        if !bin.is_file() {
            return Err(format!(
                "no S3-compatible store: {} does not exist. Run scripts/test (it installs tools/python/requirements.txt) or set VERITRACE_PYTHON.",
                bin.display()
            ));
        }
        let dir = tempfile::tempdir().map_err(|e| format!("moto dir: {e}"))?;
        let log = dir.path().join("moto.log");
        let logf = std::fs::File::create(&log).map_err(|e| format!("moto log: {e}"))?;
        let port = crate::free_port();
        // moto_server itself answers requests on threads of their own, and its conditional
        // writes are a check, then a write: two racing writers could both win. This
        // launcher serves one request at a time (see the script).
        let script = dir.path().join("moto_serial.py");
        std::fs::write(&script, MOTO_SERIAL).map_err(|e| format!("moto launcher: {e}"))?;
        let child = Command::new(crate::python::python())
            .arg(&script)
            .args(["127.0.0.1", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(logf)
            .spawn()
            .map_err(|e| format!("starting {}: {e}", bin.display()))?;
        let m = Moto { child, port, dir };
        crate::wait_port(port, "moto_server", Duration::from_secs(60), Some(&log))?;
        Ok(m)
    }

    /// The environment a `veritrace` process needs to reach this store (endpoint, plain
    /// HTTP, moto's test credentials, a region).
    pub fn client_env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_ALLOW_HTTP", "true".into()),
            ("AWS_ACCESS_KEY_ID", "test".into()),
            ("AWS_SECRET_ACCESS_KEY", "test".into()),
            ("AWS_REGION", "us-east-1".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// One unsigned request (moto accepts them for buckets): `(status, body)`. A server that
    /// closes the connection without an answer (seen right after it opened its port) is
    /// asked again, for up to 10 s.
    fn request(&self, method: &str, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
        let mut last = String::new();
        for _ in 0..40 {
            match self.try_request(method, path, "", body) {
                Ok(answer) => return answer,
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        panic!("moto_server: {method} {path}: {last}")
    }

    /// One request with extra header lines (each ending in `\r\n`).
    fn try_request(
        &self,
        method: &str,
        path: &str,
        headers: &str,
        body: &[u8],
    ) -> Result<(u16, Vec<u8>), String> {
        self.exchange(method, path, headers, body)
            .map(|(status, _, body)| (status, body))
    }

    /// [`Moto::try_request`], with the answer's head too.
    fn exchange(
        &self,
        method: &str,
        path: &str,
        headers: &str,
        body: &[u8],
    ) -> Result<(u16, String, Vec<u8>), String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).map_err(|e| e.to_string())?;
        let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n",
            self.port,
            body.len()
        )
        .and_then(|()| s.write_all(body))
        .map_err(|e| e.to_string())?;
        let mut answer = Vec::new();
        let _ = s.read_to_end(&mut answer);
        let head_end = answer
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(answer.len(), |i| i + 4);
        let head = String::from_utf8_lossy(&answer[..head_end]).into_owned();
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| format!("answered {head:?}"))?;
        Ok((status, head, answer[head_end..].to_vec()))
    }

    /// Creates a bucket (`PUT /bucket`); panics on failure.
    pub fn create_bucket(&self, name: &str) {
        let (status, body) = self.request("PUT", &format!("/{name}"), b"");
        assert_eq!(
            status,
            200,
            "creating bucket {name}: {}",
            String::from_utf8_lossy(&body)
        );
    }

    /// Runs one boto3 call on this server (moto answers object requests only when they are
    /// signed, so they go through the AWS SDK of the tools virtualenv): `op` is `get`, `put`,
    /// `delete` or `list`; `input` goes to stdin (`put`), the answer comes from stdout.
    fn boto(&self, op: &str, bucket: &str, key: &str, input: &[u8]) -> (bool, Vec<u8>) {
        const SCRIPT: &str = r#"
import sys, boto3, botocore
op, endpoint, bucket, key = sys.argv[1:5]
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                  aws_access_key_id="test", aws_secret_access_key="test")
try:
    if op == "get":
        sys.stdout.buffer.write(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    elif op == "put":
        s3.put_object(Bucket=bucket, Key=key, Body=sys.stdin.buffer.read())
    elif op == "delete":
        s3.delete_object(Bucket=bucket, Key=key)
    elif op == "list":
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key):
            for o in page.get("Contents", []):
                print(o["Key"])
except botocore.exceptions.ClientError as e:
    if e.response["Error"]["Code"] in ("NoSuchKey", "404"):
        sys.exit(3)
    raise
"#;
        let mut child = Command::new(crate::python::python())
            .args(["-c", SCRIPT, op, &self.endpoint(), bucket, key])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("python for boto3: {e}"));
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(input)
                .unwrap_or_else(|e| panic!("boto3 {op}: {e}"));
        }
        let out = child
            .wait_with_output()
            .unwrap_or_else(|e| panic!("boto3 {op}: {e}"));
        if out.status.code() == Some(3) {
            return (false, Vec::new());
        }
        assert!(
            out.status.success(),
            "boto3 {op} {bucket}/{key}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        (true, out.stdout)
    }

    /// The object `bucket/key` (`None`: there is none), read behind the program's back.
    pub fn get_object(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        match self.boto("get", bucket, key, b"") {
            (true, body) => Some(body),
            (false, _) => None,
        }
    }

    /// Writes the object `bucket/key` behind the program's back (damage, for tests).
    pub fn put_object(&self, bucket: &str, key: &str, bytes: &[u8]) {
        self.boto("put", bucket, key, bytes);
    }

    /// Deletes the object `bucket/key` behind the program's back.
    pub fn delete_object(&self, bucket: &str, key: &str) {
        self.boto("delete", bucket, key, b"");
    }

    /// The keys under `prefix` in `bucket`.
    pub fn list(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let (_, out) = self.boto("list", bucket, prefix, b"");
        String::from_utf8_lossy(&out)
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Of writers racing to create one object (`If-None-Match: *`), or to replace one
    /// version of it (`If-Match`), exactly one wins, as on S3; moto_server's own threaded
    /// server checks and then writes, so two could win (the concurrent token test once
    /// lost a token that way).
    #[test]
    fn of_racing_conditional_writers_exactly_one_wins() {
        let moto = Moto::start();
        moto.create_bucket("race");
        // moto answers a refused unsigned request 403, not 412.
        let auth = "Authorization: AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0\r\n";
        // Large bodies: moto digests them between its check and its write.
        let body = |i: usize| vec![b'a' + i as u8; 4 << 20];
        // `first` is the body of racer 0: the replacing racers write bodies other than the
        // version they replace (the same bytes would be the same version again).
        let race = |round: usize, condition: &str, first: usize| -> usize {
            std::thread::scope(|s| {
                let racers: Vec<_> = (0..8)
                    .map(|i| {
                        let headers = format!("{condition}\r\n{auth}");
                        let moto = &moto;
                        s.spawn(move || {
                            match moto.try_request(
                                "PUT",
                                &format!("/race/key-{round}"),
                                &headers,
                                &body(first + i),
                            ) {
                                Ok((200, _)) => 1,
                                Ok((412, _)) => 0,
                                other => panic!("round {round}: {other:?}"),
                            }
                        })
                    })
                    .collect();
                racers.into_iter().map(|r| r.join().expect("racer")).sum()
            })
        };
        for round in 0..10 {
            assert_eq!(
                race(round, "If-None-Match: *", 0),
                1,
                "create, round {round}"
            );
            // Every racer replaces the version all of them read.
            let (st, head, _) = moto
                .exchange("PUT", &format!("/race/key-{round}"), auth, &body(0))
                .expect("put");
            assert_eq!(st, 200);
            let etag = head
                .lines()
                .find_map(|l| l.strip_prefix("ETag: "))
                .expect("an ETag")
                .trim()
                .to_owned();
            assert_eq!(
                race(round, &format!("If-Match: {etag}"), 1),
                1,
                "replace, round {round}"
            );
        }
    }
}
