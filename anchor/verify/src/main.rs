//! `veritrace-verify`: the auditor's tool. Verifies a proof bundle or a trace certificate
//! offline (and, built with `--features rpc`, against the chain) and exits 0 when it is
//! valid and rests on a trust anchor (`--ledger`, `--key` or `--rpc`), 3 when it is valid but
//! rests on none (anyone can make such a file), 1 when it is not valid, 2 when it could not
//! decide (unreadable file, chain unreachable, bad arguments). `veritrace verify` is the same
//! code inside the node's binary.

use std::process::ExitCode;

use veritrace_verify::report::{ChainCheck, verify_document};
use veritrace_verify::verify::Options;

const USAGE: &str = "\
usage: veritrace-verify [OPTIONS] FILE

Verifies a Veritrace proof bundle or trace certificate (JSON): every hash, the batch and
epoch roots, the anchor receipt. Exit status: 0 valid and anchored in a key, ledger or chain
you supplied, 3 valid but anchored in nothing you supplied (first line UNANCHORED: anyone
with a key of their own can make such a file), 1 invalid, 2 could not decide.

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
    file: Option<String>,
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
            _ if a.file.is_none() => a.file = Some(arg),
            _ => return Err(format!("unexpected argument {arg:?}: one file at a time")),
        }
    }
    if a.file.is_none() {
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
    let file = a.file.as_deref().unwrap_or_default();
    let bytes = std::fs::read(file).map_err(|e| format!("reading {file}: {e}"))?;
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
    let verdict =
        verify_document(file, &bytes, &opts, chain.as_deref()).map_err(|e| e.to_string())?;
    emit(&if a.json {
        format!("{}\n", verdict.json)
    } else {
        verdict.text.clone()
    });
    Ok(exit_code(&verdict))
}

/// 0 valid and anchored, 3 valid and unanchored, 1 invalid.
fn exit_code(v: &veritrace_verify::report::Verdict) -> ExitCode {
    match (v.valid, v.anchored) {
        (true, true) => ExitCode::SUCCESS,
        (true, false) => ExitCode::from(3),
        (false, _) => ExitCode::from(1),
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
