//! `veritrace-verify`: the auditor's tool. Verifies a proof bundle or a trace certificate
//! offline (and, built with `--features rpc`, against the chain) and exits 0 when it is
//! valid and rests on a trust anchor (`--ledger`, `--key` or `--rpc`), 3 when it is valid but
//! rests on none (anyone can make such a file), 1 when it is not valid, 2 when it could not
//! decide (unreadable file, chain unreachable, bad arguments). `veritrace verify` is the same
//! code inside the node's binary.

use std::process::ExitCode;

use veritrace_verify::report::{ChainCheck, DocumentVerifier};
use veritrace_verify::verify::Options;

const USAGE: &str = "\
usage: veritrace-verify [OPTIONS] FILE...

Verifies a Veritrace proof bundle or trace certificate (JSON): every hash, the batch and
epoch roots, the anchor receipt. Exit status: 0 valid and anchored in a key, ledger or chain
you supplied, 3 valid but anchored in nothing you supplied (first line UNANCHORED: anyone
with a key of their own can make such a file), 1 invalid, 2 could not decide. Several files
are verified with the same anchors, each receipt's signature once (one report each; with
--json one JSON line each); the exit status is then the worst of them.

options:
  --ledger FILE        the node's local ledger: checks its whole hash chain and the receipt in it
  --key HEX            the node's published Ed25519 public key, to pin the signer
  --rpc URL            JSON-RPC URL of the chain an evm receipt names (builds with --features rpc)
  --contract ADDRESS   the operator's published VeritraceAnchor address (with --rpc)
  --witness VKEY       a witness's cosigner key (repeatable): the bundle's checkpoint must carry its cosignature
  --witnesses K        how many of the --witness keys must have cosigned (default: all)
  --rpc-timeout SECS   deadline of each JSON-RPC request (default 10)
  --json               print the report as JSON
  -h, --help           this text
  -V, --version        the version
";

#[derive(Debug, Default)]
struct Args {
    files: Vec<String>,
    ledger: Option<String>,
    key: Option<String>,
    rpc: Option<String>,
    contract: Option<String>,
    rpc_timeout: u64,
    witnesses: Vec<String>,
    witness_quorum: Option<usize>,
    json: bool,
}

enum Parsed {
    Run(Args),
    Print(String),
}

fn parse(argv: impl IntoIterator<Item = String>) -> Result<Parsed, String> {
    let mut a = Args {
        rpc_timeout: 10,
        ..Args::default()
    };
    let mut it = argv.into_iter();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| {
            inline
                .clone()
                .or_else(|| it.next())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(Parsed::Print(USAGE.to_owned())),
            "-V" | "--version" => {
                return Ok(Parsed::Print(format!(
                    "veritrace-verify {}\n",
                    env!("CARGO_PKG_VERSION")
                )));
            }
            "--json" => a.json = true,
            "--ledger" => a.ledger = Some(value("--ledger")?),
            "--witness" => a.witnesses.push(value("--witness")?),
            "--witnesses" => {
                let v = value("--witnesses")?;
                a.witness_quorum = Some(
                    v.parse()
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or_else(|| format!("--witnesses {v:?} is not a positive number"))?,
                );
            }
            "--key" => a.key = Some(value("--key")?),
            "--rpc" => a.rpc = Some(value("--rpc")?),
            "--contract" => a.contract = Some(value("--contract")?),
            "--rpc-timeout" => {
                let v = value("--rpc-timeout")?;
                a.rpc_timeout = v
                    .parse()
                    .map_err(|_| format!("--rpc-timeout {v:?} is not a number of seconds"))?;
            }
            f if f.starts_with('-') && f.len() > 1 => return Err(format!("unknown option {f}")),
            _ => a.files.push(arg),
        }
    }
    if a.files.is_empty() {
        return Err("no file given".into());
    }
    if a.witness_quorum.is_some_and(|k| k > a.witnesses.len()) {
        return Err("--witnesses asks for more witnesses than --witness names".into());
    }
    if a.contract.is_some() && a.rpc.is_none() {
        return Err("--contract needs --rpc".into());
    }
    Ok(Parsed::Run(a))
}

#[cfg(feature = "rpc")]
fn chain(a: &Args) -> Result<Option<Box<dyn ChainCheck>>, String> {
    match &a.rpc {
        Some(rpc) => Ok(Some(Box::new(veritrace_verify::chain::RpcChain::new(
            rpc,
            a.contract.as_deref(),
            std::time::Duration::from_secs(a.rpc_timeout),
        )?))),
        None => Ok(None),
    }
}

#[cfg(not(feature = "rpc"))]
fn chain(a: &Args) -> Result<Option<Box<dyn ChainCheck>>, String> {
    match a.rpc {
        Some(_) => Err(
            "this veritrace-verify was built without the chain check: build it with --features rpc to use --rpc"
                .into(),
        ),
        None => Ok(None),
    }
}

fn run(a: &Args) -> Result<ExitCode, String> {
    let ledger = match &a.ledger {
        Some(p) => {
            Some(std::fs::read_to_string(p).map_err(|e| format!("reading ledger {p}: {e}"))?)
        }
        None => None,
    };
    let opts = Options {
        ledger,
        pinned_key: a.key.clone(),
        witnesses: a.witnesses.clone(),
        witness_quorum: a.witness_quorum,
    };
    let chain = chain(a)?;
    let verifier = DocumentVerifier::new(&opts, chain.as_deref());
    let mut worst = 0u8;
    for file in &a.files {
        let bytes = std::fs::read(file).map_err(|e| format!("reading {file}: {e}"))?;
        let verdict = verifier.verify(file, &bytes).map_err(|e| e.to_string())?;
        emit(&if a.json {
            format!("{}\n", verdict.json)
        } else {
            verdict.text.clone()
        });
        worst = worst.max(severity(&verdict));
    }
    Ok(ExitCode::from(match worst {
        2 => 1,
        1 => 3,
        _ => 0,
    }))
}

/// How bad a verdict is, for the worst of several: 0 anchored, 1 unanchored, 2 invalid.
fn severity(v: &veritrace_verify::report::Verdict) -> u8 {
    match (v.valid, v.anchored) {
        (true, true) => 0,
        (true, false) => 1,
        (false, _) => 2,
    }
}

fn main() -> ExitCode {
    match parse(std::env::args().skip(1)) {
        Ok(Parsed::Print(text)) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Ok(Parsed::Run(a)) => match run(&a) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("veritrace-verify: {e}");
                ExitCode::from(2)
            }
        },
        Err(e) => {
            eprintln!("veritrace-verify: {e}\n\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

/// Writes the report to stdout. A reader that went away (`verify ... | head -1`) is not an
/// error: the exit status still gives the verdict.
fn emit(report: &str) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(report.as_bytes()).and_then(|()| out.flush())
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        eprintln!("writing the report: {e}");
    }
}
