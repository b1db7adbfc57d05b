//! `veritrace keys generate` and `veritrace sign`: what an integrator needs to make a
//! device or a connector sign its events (COSE_Sign1 or JWS, ES256 or EdDSA), with the
//! verifier's own signing code ([`veritrace_verify::signature`]), so what is signed here is
//! exactly what the pipeline and auditors verify.
//!
//! A key file is JSON, written with mode 0600:
//! `{"format": "veritrace.key/1", "alg": "ES256", "secret": HEX, "public": "ES256:HEX",
//! "key_id": HEX}`. Only `alg` and `secret` are read back; `public` and `key_id` are there
//! to be copied into a registration.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use veritrace_verify::bundle_sig::sign_bundle;
use veritrace_verify::signature::{
    Alg, Claims, Envelope, SigningKey, cose_with_disclosures, jws_with_disclosures, sign_cose,
    sign_jws,
};

/// The key file format's name.
pub const KEY_FORMAT: &str = "veritrace.key/1";

/// `veritrace keys ...`
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Generate a signing key for a device or participant: writes the key file (mode 0600)
    /// and prints the public key and key id to register.
    Generate(GenerateArgs),
}

/// A signature algorithm on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AlgArg {
    /// ECDSA P-256 with SHA-256 (secure elements, TPM 2.0).
    #[value(name = "ES256")]
    Es256,
    /// Ed25519.
    #[value(name = "EdDSA")]
    EdDsa,
}

impl From<AlgArg> for Alg {
    fn from(a: AlgArg) -> Alg {
        match a {
            AlgArg::Es256 => Alg::Es256,
            AlgArg::EdDsa => Alg::EdDsa,
        }
    }
}

/// Flags of `veritrace keys generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Algorithm.
    #[arg(long, value_enum, default_value = "ES256")]
    alg: AlgArg,
    /// The key file to write (refused if it exists).
    #[arg(long)]
    out: PathBuf,
}

/// The envelope `veritrace sign` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EnvelopeArg {
    /// JWS compact serialization, one per line.
    Jws,
    /// COSE_Sign1, as a CBOR sequence (RFC 8742): the envelopes one after another.
    Cose,
}

/// Flags of `veritrace sign`.
#[derive(Debug, Args)]
pub struct SignArgs {
    /// The key file (`veritrace keys generate`).
    #[arg(long)]
    key: PathBuf,
    /// The signer's id (the device or participant id): the `iss` claim.
    #[arg(long)]
    issuer: String,
    /// The envelope.
    #[arg(long, value_enum, default_value = "jws")]
    format: EnvelopeArg,
    /// The signing time (`iat`, seconds since 1970); default: now.
    #[arg(long)]
    iat: Option<i64>,
    /// Where to write the envelopes (default: standard output, for JWS only).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Sign bundles of up to this many events with one signature each (for high-rate
    /// devices): writes one bundle record per line, `{"bundle": ENVELOPE, "events": [...]}`,
    /// the envelope signing the RFC 6962 root over the events as written.
    #[arg(long)]
    bundle: Option<usize>,
    /// Commit this field before signing (`attributes.price`, `counterparty.name`, ...;
    /// repeatable): the signed event holds a salted commitment, and the value and salt are
    /// disclosed beside the signature (SD-JWT style), so the operator can erase them and
    /// the signature still verifies.
    #[arg(long = "private", value_name = "FIELD")]
    private: Vec<String>,
    /// A JSON event, or a file of them (JSON lines); `-` reads standard input.
    input: PathBuf,
}

/// Replaces the fields of `event` named in `paths` (those it holds) by salted commitments;
/// returns their disclosures.
fn commit_fields(
    event: &mut serde_json::Value,
    paths: &[String],
) -> anyhow::Result<Vec<veritrace_verify::private::Disclosure>> {
    use veritrace_verify::private::{Disclosure, commit};
    let mut out = Vec::new();
    for path in paths {
        let mut slot = Some(&mut *event);
        for part in path.split('.') {
            slot = slot.and_then(|v| v.get_mut(part));
        }
        let Some(slot) = slot.filter(|v| !v.is_null()) else {
            continue;
        };
        let mut salt = [0u8; 16];
        getrandom::fill(&mut salt).map_err(|e| anyhow::anyhow!("no randomness for a salt: {e}"))?;
        let value = slot.take();
        *slot = serde_json::Value::String(commit(&salt, &value).map_err(anyhow::Error::msg)?);
        out.push(Disclosure {
            path: path.clone(),
            value,
            salt: hex::encode(salt),
        });
    }
    Ok(out)
}

#[derive(serde::Serialize, serde::Deserialize)]
struct KeyFile {
    format: String,
    alg: String,
    secret: String,
    #[serde(default)]
    public: String,
    #[serde(default)]
    key_id: String,
}

/// A new key for `alg` from the OS's randomness.
pub fn generate(alg: Alg) -> anyhow::Result<SigningKey> {
    // A random 32-byte string is a valid P-256 scalar except with probability ~2^-32;
    // draw again in that case.
    for _ in 0..16 {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(|e| anyhow::anyhow!("no OS randomness: {e}"))?;
        if let Ok(k) = SigningKey::from_bytes(alg, &secret) {
            return Ok(k);
        }
    }
    bail!("could not draw a valid {} key", alg.name())
}

fn write_key(path: &Path, alg: Alg, secret: &[u8; 32], key: &SigningKey) -> anyhow::Result<()> {
    let public = key.public();
    let file = KeyFile {
        format: KEY_FORMAT.into(),
        alg: alg.name().into(),
        secret: hex::encode(secret),
        public: public.to_text(),
        key_id: public.key_id(),
    };
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).with_context(|| {
        format!(
            "creating key file {} (it must not exist yet)",
            path.display()
        )
    })?;
    f.write_all(format!("{}\n", serde_json::to_string_pretty(&file)?).as_bytes())?;
    f.sync_all()?;
    Ok(())
}

/// Reads a key file.
pub fn read_key(path: &Path) -> anyhow::Result<SigningKey> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading key file {}", path.display()))?;
    let file: KeyFile = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a veritrace key file", path.display()))?;
    if file.format != KEY_FORMAT {
        bail!(
            "{}: format {:?}, this build reads {KEY_FORMAT:?}",
            path.display(),
            file.format
        );
    }
    let alg = Alg::from_name(&file.alg).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let mut secret = [0u8; 32];
    hex::decode_to_slice(file.secret.trim(), &mut secret)
        .with_context(|| format!("{}: the secret is not 64 hex digits", path.display()))?;
    let key = SigningKey::from_bytes(alg, &secret)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    if !file.public.is_empty() && file.public != key.public().to_text() {
        bail!(
            "{}: the public key written in the file is not the secret's (edited?)",
            path.display()
        );
    }
    Ok(key)
}

/// `veritrace keys generate`.
pub fn keys_cmd(cmd: KeysCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        KeysCommand::Generate(a) => {
            let alg = Alg::from(a.alg);
            let key = generate(alg)?;
            let secret: [u8; 32] = match &key {
                SigningKey::P256(k) => k.to_bytes().into(),
                SigningKey::Ed25519(k) => k.to_bytes(),
            };
            write_key(&a.out, alg, &secret, &key)?;
            let public = key.public();
            println!(
                "{}",
                serde_json::json!({
                    "key_file": a.out.display().to_string(),
                    "alg": alg.name(),
                    "public": public.to_text(),
                    "key_id": public.key_id(),
                })
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Seconds since 1970, now (the `iat` of what is signed here).
pub(crate) fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

/// `veritrace sign`.
pub fn sign_cmd(a: SignArgs) -> anyhow::Result<ExitCode> {
    let key = read_key(&a.key)?;
    let kid = key.public().key_id();
    let reader: Box<dyn BufRead> = if a.input == Path::new("-") {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(std::io::BufReader::new(
            std::fs::File::open(&a.input)
                .with_context(|| format!("reading {}", a.input.display()))?,
        ))
    };
    let mut out: Box<dyn Write> = match (&a.out, a.format) {
        (None, EnvelopeArg::Cose) if a.bundle.is_some() => {
            Box::new(std::io::BufWriter::new(std::io::stdout().lock()))
        }
        (Some(p), _) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?,
        )),
        (None, EnvelopeArg::Jws) => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
        (None, EnvelopeArg::Cose) => bail!("COSE envelopes are binary: give --out FILE"),
    };
    let iat = a.iat.unwrap_or_else(now_secs);
    for p in &a.private {
        anyhow::ensure!(
            veritrace_verify::private::is_private_path(p),
            "--private {p}: only operator, site, participant.name, counterparty.name and attributes.KEY can be private"
        );
    }
    if let Some(n) = a.bundle {
        anyhow::ensure!(
            a.private.is_empty(),
            "--private takes single events: a bundle signs its events as written and has no place for disclosures"
        );
        anyhow::ensure!(
            (1..=10_000).contains(&n),
            "--bundle takes 1 to 10000 events"
        );
        let envelope = match a.format {
            EnvelopeArg::Jws => Envelope::Jws,
            EnvelopeArg::Cose => Envelope::Cose,
        };
        let mut events: Vec<String> = Vec::with_capacity(n);
        let mut bundles = 0u64;
        let mut signed = 0u64;
        let mut flush =
            |events: &mut Vec<String>, out: &mut Box<dyn Write>| -> anyhow::Result<()> {
                if events.is_empty() {
                    return Ok(());
                }
                let refs: Vec<&[u8]> = events.iter().map(|e| e.as_bytes()).collect();
                out.write_all(&sign_bundle(&key, &kid, &a.issuer, iat, &refs, envelope))?;
                out.write_all(b"\n")?;
                signed += events.len() as u64;
                bundles += 1;
                events.clear();
                Ok(())
            };
        for (i, line) in reader.lines().enumerate() {
            let line = line.with_context(|| format!("reading line {}", i + 1))?;
            let text = line.trim();
            if text.is_empty() {
                continue;
            }
            serde_json::from_str::<serde_json::Value>(text)
                .with_context(|| format!("line {} is not a JSON event", i + 1))?;
            events.push(text.to_owned());
            if events.len() == n {
                flush(&mut events, &mut out)?;
            }
        }
        flush(&mut events, &mut out)?;
        out.flush()?;
        eprintln!(
            "signed {signed} events in {bundles} bundles with {} key {kid} as {}",
            key.public().alg().name(),
            a.issuer
        );
        return Ok(ExitCode::SUCCESS);
    }
    let mut signed = 0u64;
    for (i, line) in reader.lines().enumerate() {
        let line = line.with_context(|| format!("reading line {}", i + 1))?;
        let text = line.trim();
        if text.is_empty() {
            continue;
        }
        let mut event: serde_json::Value = serde_json::from_str(text)
            .with_context(|| format!("line {} is not a JSON event", i + 1))?;
        let disclosures = commit_fields(&mut event, &a.private)?;
        let committed;
        let text = if disclosures.is_empty() {
            text
        } else {
            committed = event.to_string();
            committed.as_str()
        };
        let claims = Claims {
            iss: Some(a.issuer.clone()),
            sub: event
                .get("trace_code")
                .and_then(|c| c.as_str())
                .map(str::to_owned),
            iat: Some(iat),
        };
        // The payload is the event as given: the pipeline canonicalises what it verifies.
        match a.format {
            EnvelopeArg::Jws => {
                let jws = sign_jws(&key, &kid, &claims, text.as_bytes());
                writeln!(out, "{}", jws_with_disclosures(&jws, &disclosures))?;
            }
            EnvelopeArg::Cose => out.write_all(&cose_with_disclosures(
                &sign_cose(&key, &kid, &claims, text.as_bytes()),
                &disclosures,
            )?)?,
        }
        signed += 1;
    }
    out.flush()?;
    eprintln!(
        "signed {signed} events with {} key {kid} as {}",
        key.public().alg().name(),
        a.issuer
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use veritrace_verify::signature::{parse_cose, parse_jws};

    #[test]
    fn generated_keys_sign_what_the_verifier_accepts_and_files_round_trip() {
        let dir = tempfile::tempdir().expect("dir");
        for alg in [Alg::Es256, Alg::EdDsa] {
            let key = generate(alg).expect("generate");
            let secret: [u8; 32] = match &key {
                SigningKey::P256(k) => k.to_bytes().into(),
                SigningKey::Ed25519(k) => k.to_bytes(),
            };
            let path = dir.path().join(format!("{}.key", alg.name()));
            write_key(&path, alg, &secret, &key).expect("write");
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
                assert_eq!(mode & 0o777, 0o600);
            }
            assert!(
                write_key(&path, alg, &secret, &key).is_err(),
                "never overwritten"
            );
            let back = read_key(&path).expect("read");
            assert_eq!(back.public(), key.public());
            let claims = Claims {
                iss: Some("dev-1".into()),
                sub: None,
                iat: Some(1),
            };
            parse_jws(&sign_jws(&back, "k", &claims, b"{}"))
                .expect("jws")
                .verify(&key.public())
                .expect("verifies");
            parse_cose(&sign_cose(&back, "k", &claims, b"{}"))
                .expect("cose")
                .verify(&key.public())
                .expect("verifies");
        }
        // A file whose public key was edited is refused.
        let path = dir.path().join("ES256.key");
        let text = std::fs::read_to_string(&path).expect("read");
        let mut v: serde_json::Value = serde_json::from_str(&text).expect("json");
        v["public"] = "ES256:00".into();
        let edited = dir.path().join("edited.key");
        std::fs::write(&edited, v.to_string()).expect("write");
        assert!(read_key(&edited).is_err());
    }
}
