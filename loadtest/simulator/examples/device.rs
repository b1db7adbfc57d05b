//! An example device: signs telemetry readings with its key (ES256 or EdDSA, a
//! `veritrace keys generate` key file) and posts them to `veritrace gateway`, one signed
//! statement per reading or one bundle signature per batch, retrying when the gateway says
//! so (429 and 503 with `Retry-After`). What a PLC gateway or a sensor hub does, in a page.
//!
//! ```sh
//! veritrace keys generate --alg ES256 --out press-07.key
//! veritrace device register --admin-key acme-admin.key --participant ACME --id press-07 --key press-07.key
//! cargo run -p veritrace-simulator --example device -- \
//!   127.0.0.1:8090 press-07.key press-07 ACME 1000 [jws|cose] [BUNDLE]
//! ```

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use veritrace_verify::bundle_sig::sign_bundle;
use veritrace_verify::signature::{Alg, Claims, Envelope, SigningKey, sign_cose, sign_jws};

/// Reads a `veritrace.key/1` file: `{"alg": "ES256"|"EdDSA", "secret": HEX, ...}`.
fn read_key(path: &str) -> Result<SigningKey, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| format!("{path}: {e}"))?;
    let alg = Alg::from_name(v["alg"].as_str().unwrap_or_default()).map_err(|e| e.to_string())?;
    let hex = v["secret"].as_str().unwrap_or_default();
    let mut secret = [0u8; 32];
    if hex.len() != 64 {
        return Err(format!("{path}: the secret is not 64 hex digits"));
    }
    for (i, b) in secret.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)
            .map_err(|_| format!("{path}: the secret is not hex"))?;
    }
    SigningKey::from_bytes(alg, &secret).map_err(|e| e.to_string())
}

/// One POST; the status, `Retry-After` in seconds, and the body.
fn post(
    addr: &str,
    content_type: &str,
    body: &[u8],
) -> std::io::Result<(u16, Option<u64>, String)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    write!(
        s,
        "POST /v1/ingest HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    s.write_all(body)?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    let status = resp
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    let retry = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("retry-after")
            .then(|| v.trim().parse().ok())
            .flatten()
    });
    Ok((status, retry, body.to_owned()))
}

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 5 {
        return Err(
            "usage: device GATEWAY KEY_FILE DEVICE_ID PARTICIPANT_ID COUNT [jws|cose] [BUNDLE]"
                .into(),
        );
    }
    let (addr, key_file, device, participant) = (&args[0], &args[1], &args[2], &args[3]);
    let count: u64 = args[4].parse().map_err(|e| format!("COUNT: {e}"))?;
    let envelope = match args.get(5).map_or("jws", String::as_str) {
        "jws" => Envelope::Jws,
        "cose" => Envelope::Cose,
        other => return Err(format!("envelope {other}: jws or cose")),
    };
    let bundle: usize = args
        .get(6)
        .map_or(Ok(0), |b| b.parse())
        .map_err(|e| format!("BUNDLE: {e}"))?;
    let key = read_key(key_file)?;
    let kid = key.public().key_id();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| e.to_string())?;
    let iat = now.as_secs() as i64;
    let run = now.as_millis();

    let readings: Vec<Vec<u8>> = (0..count)
        .map(|i| {
            serde_json::json!({
                "event_id": format!("{device}-{run}-{i}"),
                "event_type": "telemetry",
                "event_time": veritrace_processors::rfc3339_ms(now.as_millis() as i64 + i as i64),
                "participant": {"id": participant, "role": "manufacturer"},
                "device_id": device,
                "readings": {"temp_c": 20.0 + (i % 50) as f64 / 10.0, "vibration_mm_s": (i % 7) as f64},
            })
            .to_string()
            .into_bytes()
        })
        .collect();

    // Requests: bundles of BUNDLE readings (one signature each), or up to 500 readings
    // each signed on its own.
    let per_request = if bundle > 0 { bundle } else { 500 };
    let mut sent = 0u64;
    for chunk in readings.chunks(per_request) {
        let (content_type, body) = if bundle > 0 {
            let refs: Vec<&[u8]> = chunk.iter().map(Vec::as_slice).collect();
            (
                "application/json",
                sign_bundle(&key, &kid, device, iat, &refs, envelope),
            )
        } else {
            let claims = Claims {
                iss: Some(device.clone()),
                sub: None,
                iat: Some(iat),
            };
            match envelope {
                Envelope::Jws => {
                    let lines: Vec<String> = chunk
                        .iter()
                        .map(|r| sign_jws(&key, &kid, &claims, r))
                        .collect();
                    ("application/jose", lines.join("\n").into_bytes())
                }
                Envelope::Cose => (
                    "application/cose",
                    chunk
                        .iter()
                        .flat_map(|r| sign_cose(&key, &kid, &claims, r))
                        .collect(),
                ),
            }
        };
        // Retry what the gateway asks to retry; a resent record is one row.
        loop {
            let (status, retry, answer) =
                post(addr, content_type, &body).map_err(|e| e.to_string())?;
            match status {
                202 => break,
                429 | 503 => std::thread::sleep(Duration::from_secs(retry.unwrap_or(1))),
                _ => return Err(format!("gateway answered {status}: {answer}")),
            }
        }
        sent += chunk.len() as u64;
    }
    println!(
        "{}",
        serde_json::json!({"device": device, "alg": key.public().alg().name(), "key_id": kid, "sent": sent, "bundle": bundle})
    );
    Ok(())
}
