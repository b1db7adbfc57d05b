//! `veritrace codes`: serialised codes that prove themselves (GS1 DigSig, AI 8030;
//! [`veritrace_verify::digsig`]).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use veritrace_verify::digsig::Code;
use veritrace_verify::signature::PublicKey;

/// `veritrace codes ...`.
#[derive(Debug, Subcommand)]
pub enum CodesCommand {
    /// Issues serialised codes of a GTIN: random serials (not guessable from their
    /// neighbours), each signed with the brand's key in AI 8030. Prints one code a line: the
    /// Digital Link and the element string (for 2D barcodes), tab-separated.
    Issue {
        /// The GTIN (8-14 digits, check digit included).
        #[arg(long)]
        gtin: String,
        /// How many.
        #[arg(long, default_value_t = 1)]
        count: u32,
        /// The brand's key file (`veritrace keys generate`).
        #[arg(long)]
        key: PathBuf,
        /// Serial length (up to 20 characters).
        #[arg(long, default_value_t = 12)]
        serial_length: usize,
        /// The Digital Link host.
        #[arg(long, default_value = "https://id.gs1.org")]
        host: String,
        /// Also write a `code_issued` event per code (JSON lines) to this file, for
        /// `veritrace ingest file`: the log then holds every code issued.
        #[arg(long, requires = "recorder")]
        events: Option<PathBuf>,
        /// Who records the issue events, `ID:ROLE`.
        #[arg(long)]
        recorder: Option<veritrace_processors::epcis::Recorder>,
    },
    /// Checks a code's AI 8030 signature offline with the brand's public key: exit status 0
    /// when genuine, 1 when not (unsigned, forged, guessed, or another brand's).
    Verify {
        /// The code: a Digital Link or an element string with (8030).
        code: String,
        /// The brand's public key, `ALG:HEX` (printed by `veritrace keys generate`; the key file's `public`).
        #[arg(long)]
        key: String,
    },
}

/// A random serial of `len` characters from an alphabet without look-alikes (no 0/O,
/// 1/I/L): 31 symbols, about 5 bits a character, so 12 characters are 59 bits.
fn random_serial(len: usize) -> anyhow::Result<String> {
    const ALPHABET: &[u8] = b"23456789ABCDEFGHJKMNPQRSTUVWXYZ";
    let mut out = String::with_capacity(len);
    while out.len() < len {
        let mut b = [0u8; 16];
        getrandom::fill(&mut b).map_err(|e| anyhow::anyhow!("no OS randomness: {e}"))?;
        // Rejection sampling: 248 = 8 * 31, so every symbol is equally likely.
        for x in b {
            if x < 248 && out.len() < len {
                out.push(char::from(ALPHABET[usize::from(x) % ALPHABET.len()]));
            }
        }
    }
    Ok(out)
}

/// Runs `veritrace codes`.
pub fn codes_cmd(c: CodesCommand) -> anyhow::Result<ExitCode> {
    match c {
        CodesCommand::Issue {
            gtin,
            count,
            key,
            serial_length,
            host,
            events,
            recorder,
        } => {
            anyhow::ensure!(
                (6..=veritrace_verify::digsig::MAX_SERIAL).contains(&serial_length),
                "--serial-length must be 6-20 (shorter serials are guessable)"
            );
            let key = crate::signing::read_key(&key)?;
            let key_id = key.public().key_id();
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            let mut log = match &events {
                Some(p) => Some(std::io::BufWriter::new(
                    std::fs::File::create(p)
                        .with_context(|| format!("creating {}", p.display()))?,
                )),
                None => None,
            };
            let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            let mut seen = std::collections::HashSet::new();
            while seen.len() < count as usize {
                let serial = random_serial(serial_length)?;
                if !seen.insert(serial.clone()) {
                    continue;
                }
                let code = Code::new(&gtin, &serial, None)
                    .map_err(|e| anyhow::anyhow!("{e}"))?
                    .signed(&key);
                writeln!(
                    out,
                    "{}\t{}",
                    code.digital_link(&host),
                    code.element_string()
                )?;
                if let (Some(f), Some(r)) = (log.as_mut(), &recorder) {
                    let ev = serde_json::json!({
                        "event_id": format!("code:{}:{}", code.gtin, code.serial),
                        "event_type": "code_issued",
                        "event_time": now,
                        "participant": {"id": r.id, "role": r.role},
                        "trace_code": code.trace_code(),
                        "attributes": {
                            "digsig": code.signature,
                            "key_id": key_id,
                            "digital_link": code.digital_link(&host),
                        },
                    });
                    writeln!(f, "{ev}")?;
                }
            }
            out.flush()?;
            if let Some(mut f) = log {
                f.flush()?;
            }
            Ok(ExitCode::SUCCESS)
        }
        CodesCommand::Verify { code, key } => {
            let key = PublicKey::parse(&key).map_err(|e| anyhow::anyhow!("--key: {e}"))?;
            let code = match Code::parse(&code) {
                Ok(c) => c,
                Err(e) => {
                    println!("NOT GENUINE: {e}");
                    return Ok(ExitCode::from(1));
                }
            };
            match code.verify(&key) {
                Ok(()) => {
                    println!(
                        "GENUINE: {} signed by key {}",
                        code.trace_code(),
                        key.key_id()
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    println!("NOT GENUINE: {} ({e})", code.trace_code());
                    Ok(ExitCode::from(1))
                }
            }
        }
    }
}
