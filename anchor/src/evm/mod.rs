//! The EVM anchor backend: the `VeritraceAnchor` contract, compiled from
//! `anchor/contracts/VeritraceAnchor.sol` into the committed artifact this module embeds
//! (so building never needs node), and everything done with it over JSON-RPC:
//!
//! - [`deploy`]: `veritrace anchor deploy --rpc URL`.
//! - [`EvmAnchorer`]: anchors sealed epochs in order, one transaction each, waits for the
//!   configured confirmations, retries with backoff while the chain is down, and re-anchors
//!   an epoch whose block a reorg removed. Every transaction is signed and written to the
//!   journal (`anchors/evm.jsonl`) *before* it is broadcast, so a restart finds it again
//!   instead of sending a second one; the contract refuses a root twice in any case.
//! - [`check_on_chain`] (from the verifier crate): what `veritrace verify --rpc URL` asks
//!   the chain.
//!
//! The writer key comes from a file or [`KEY_ENV`] and never appears in a log line or an
//! error. The key should be used by Veritrace only (nonces are managed here).

use std::path::Path;
use std::time::Duration;

use alloy::network::EthereumWallet;
use alloy::primitives::B256;
use alloy::providers::{Provider, ProviderBuilder};
use serde::Serialize;

use crate::{ChainError, Error, Result};

mod decide;
mod engine;
pub(crate) mod journal;

pub use alloy::primitives::Address;
pub use alloy::signers::local::PrivateKeySigner;
pub use engine::{AnchorStatus, EvmAnchorer, EvmSettings};
pub use journal::{JournalRecord, read_receipts};
pub use veritrace_verify::chain::{VeritraceAnchor, check_on_chain};
use veritrace_verify::chain::{redact_url, scrub_url};
pub use veritrace_verify::report::ChainCheckError;

/// Environment variable holding the writer's private key when no key file is given.
pub const KEY_ENV: &str = "VERITRACE_EVM_KEY";

/// Receipt polling interval: Anvil and most consortium chains seal blocks in about a
/// second or less; alloy's default (7 s for remote URLs) would dominate anchor latency.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Loads the writer's private key (hex, `0x` optional) from `file`, else from the
/// environment variable [`KEY_ENV`]. Errors name where the key was looked for, never
/// the key.
pub fn load_key(file: Option<&Path>) -> Result<PrivateKeySigner> {
    let (text, source) = match file {
        Some(p) => (
            std::fs::read_to_string(p).map_err(Error::io("read key file", p))?,
            p.display().to_string(),
        ),
        None => (
            std::env::var(KEY_ENV).map_err(|_| {
                Error::Invalid(format!(
                    "no EVM key: set {KEY_ENV} (hex private key), or give a key file (--key-file FILE, or anchor.evm.key-file in the config)"
                ))
            })?,
            format!("${KEY_ENV}"),
        ),
    };
    let hex = text.trim().trim_start_matches("0x");
    let bytes: [u8; 32] = hex::decode(hex)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| {
            Error::Invalid(format!(
                "the EVM key in {source} is not 32 bytes of hex (64 hex digits)"
            ))
        })?;
    PrivateKeySigner::from_bytes(&B256::from(bytes)).map_err(|_| {
        Error::Invalid(format!(
            "the EVM key in {source} is not a valid secp256k1 key"
        ))
    })
}

/// Where the contract was deployed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Deployment {
    /// The chain's id (`eth_chainId`).
    pub chain_id: u64,
    /// The contract address.
    pub contract: Address,
    /// The deploying transaction.
    pub tx_hash: B256,
    /// Its block.
    pub block_number: u64,
    /// The owner (the deploying key's address).
    pub owner: Address,
}

pub(crate) fn rpc_url(rpc: &str) -> Result<alloy::transports::http::reqwest::Url> {
    veritrace_verify::chain::rpc_url(rpc).map_err(Error::Invalid)
}

/// A signing provider for `key` on the Ethereum network type (every EVM chain we target).
/// Nonces are read from the chain for every transaction: alloy's cached nonce manager
/// consumes a nonce even when gas estimation fails (a revert), leaving a gap that blocks
/// every later transaction.
fn wallet_provider(
    rpc: &str,
    key: PrivateKeySigner,
    poll: Duration,
) -> Result<impl Provider<alloy::network::Ethereum> + Clone> {
    let provider = ProviderBuilder::new()
        .disable_recommended_fillers()
        .with_gas_estimation()
        .with_simple_nonce_management()
        .fetch_chain_id()
        .wallet(EthereumWallet::from(key))
        .connect_http(rpc_url(rpc)?);
    provider.client().set_poll_interval(poll);
    Ok(provider)
}

/// Waits (up to two minutes) for a sent transaction's receipt; a revert is an error.
pub(crate) async fn mined(
    pending: alloy::providers::PendingTransactionBuilder<alloy::network::Ethereum>,
    what: &str,
    rpc: &str,
) -> Result<(B256, alloy::rpc::types::TransactionReceipt)> {
    let tx_hash = *pending.tx_hash();
    let receipt = pending
        .with_timeout(Some(Duration::from_secs(120)))
        .get_receipt()
        .await
        .map_err(|e| {
            Error::Chain(ChainError::Rpc {
                call: format!("waiting for {what} {tx_hash}"),
                endpoint: redact_url(rpc),
                detail: scrub_url(&e.to_string(), rpc),
            })
        })?;
    if !receipt.status() {
        return Err(Error::Chain(ChainError::Refused {
            what: format!("{what} {tx_hash}"),
            detail: "reverted".into(),
        }));
    }
    Ok((tx_hash, receipt))
}

/// Deploys `VeritraceAnchor` with `key` as its owner and waits for the receipt.
pub async fn deploy(rpc: &str, key: PrivateKeySigner, poll: Duration) -> Result<Deployment> {
    let owner = key.address();
    let provider = wallet_provider(rpc, key, poll)?;
    let rpc_err = |what: &str| {
        let what = what.to_owned();
        move |e: alloy::transports::TransportError| {
            Error::Chain(ChainError::Rpc {
                call: what,
                endpoint: redact_url(rpc),
                detail: scrub_url(&e.to_string(), rpc),
            })
        }
    };
    let chain_id = provider
        .get_chain_id()
        .await
        .map_err(rpc_err("eth_chainId"))?;
    let pending = VeritraceAnchor::deploy_builder::<_, alloy::network::Ethereum>(&provider)
        .send()
        .await
        .map_err(|e| {
            Error::Chain(ChainError::Rpc {
                call: "sending the deployment".into(),
                endpoint: redact_url(rpc),
                detail: scrub_url(&e.to_string(), rpc),
            })
        })?;
    let (tx_hash, receipt) = mined(pending, "deployment", rpc).await?;
    let contract = receipt.contract_address.ok_or_else(|| {
        Error::Chain(ChainError::Inconsistent(format!(
            "deployment {tx_hash} created no contract"
        )))
    })?;
    Ok(Deployment {
        chain_id,
        contract,
        tx_hash,
        block_number: receipt.block_number.unwrap_or_default(),
        owner,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn keys_load_from_files_and_bad_keys_never_echo() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("k");
        // Anvil's well-known first dev key.
        std::fs::write(
            &f,
            "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80\n",
        )
        .unwrap();
        let k = load_key(Some(&f)).unwrap();
        assert_eq!(
            k.address().to_string(),
            "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
        );
        std::fs::write(&f, "not-a-key-secret-value").unwrap();
        let e = load_key(Some(&f)).unwrap_err().to_string();
        assert!(
            e.contains("64 hex digits") && !e.contains("secret-value"),
            "{e}"
        );
        assert!(load_key(Some(&d.path().join("missing"))).is_err());
    }
}
