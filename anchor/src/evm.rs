//! The EVM anchor backend (in progress): the `VeritraceAnchor` contract, compiled from
//! `anchor/contracts/VeritraceAnchor.sol` into the committed artifact this module embeds
//! (so building never needs node), and the operations on it over JSON-RPC.
//!
//! Today: loading the writer key, deploying the contract, and anchoring one root with its
//! receipt. Driving epochs through it (confirmations, retries, reorgs), receipts in proofs
//! and chain-side verification build on this.

use std::path::Path;
use std::time::Duration;

use alloy::network::EthereumWallet;
use alloy::primitives::{Address, B256};
use alloy::providers::{Provider, ProviderBuilder};
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::SolEvent;
use serde::Serialize;

use crate::{Error, Result};

alloy::sol!(
    #[sol(rpc)]
    #[derive(Debug)]
    VeritraceAnchor,
    "contracts/VeritraceAnchor.json"
);

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
                    "no EVM key: pass --key-file FILE or set {KEY_ENV} (hex private key)"
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

fn rpc_url(rpc: &str) -> Result<alloy::transports::http::reqwest::Url> {
    rpc.parse()
        .map_err(|e| Error::Invalid(format!("--rpc {rpc:?} is not a URL: {e}")))
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
async fn mined(
    pending: alloy::providers::PendingTransactionBuilder<alloy::network::Ethereum>,
    what: &str,
) -> Result<(B256, alloy::rpc::types::TransactionReceipt)> {
    let tx_hash = *pending.tx_hash();
    let receipt = pending
        .with_timeout(Some(Duration::from_secs(120)))
        .get_receipt()
        .await
        .map_err(|e| Error::Chain(format!("waiting for {what} {tx_hash}: {e}")))?;
    if !receipt.status() {
        return Err(Error::Chain(format!("{what} {tx_hash} reverted")));
    }
    Ok((tx_hash, receipt))
}

/// Deploys `VeritraceAnchor` with `key` as its owner and waits for the receipt.
pub async fn deploy(rpc: &str, key: PrivateKeySigner, poll: Duration) -> Result<Deployment> {
    let owner = key.address();
    let provider = wallet_provider(rpc, key, poll)?;
    let rpc_err = |what: &str| {
        let what = what.to_owned();
        move |e: alloy::transports::TransportError| Error::Chain(format!("{what} via {rpc}: {e}"))
    };
    let chain_id = provider
        .get_chain_id()
        .await
        .map_err(rpc_err("eth_chainId"))?;
    let pending = VeritraceAnchor::deploy_builder::<_, alloy::network::Ethereum>(&provider)
        .send()
        .await
        .map_err(|e| Error::Chain(format!("sending the deployment via {rpc}: {e}")))?;
    let (tx_hash, receipt) = mined(pending, "deployment").await?;
    let contract = receipt
        .contract_address
        .ok_or_else(|| Error::Chain(format!("deployment {tx_hash} created no contract")))?;
    Ok(Deployment {
        chain_id,
        contract,
        tx_hash,
        block_number: receipt.block_number.unwrap_or_default(),
        owner,
    })
}

/// Where an epoch root landed on chain: everything a proof bundle needs to name it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EvmReceipt {
    /// The chain's id.
    pub chain_id: u64,
    /// The contract holding the root.
    pub contract: Address,
    /// The anchoring transaction.
    pub tx_hash: B256,
    /// Its block number.
    pub block_number: u64,
    /// Its block hash (a reorg changes it).
    pub block_hash: B256,
    /// Index of the `Anchored` log in the block.
    pub log_index: u64,
}

/// A writer connected to one deployed contract.
#[derive(Debug, Clone)]
pub struct Writer {
    rpc: String,
    key: PrivateKeySigner,
    contract: Address,
    poll: Duration,
}

impl Writer {
    /// A writer for `contract` on the chain at `rpc`.
    pub fn new(rpc: &str, key: PrivateKeySigner, contract: Address, poll: Duration) -> Self {
        Writer {
            rpc: rpc.to_owned(),
            key,
            contract,
            poll,
        }
    }

    /// Anchors `root` and waits for its receipt. A root that is already on chain is an
    /// error naming the block (the caller looks the receipt up instead of writing twice).
    pub async fn anchor(&self, root: B256, epoch_id: u64, batch_count: u64) -> Result<EvmReceipt> {
        let provider = wallet_provider(&self.rpc, self.key.clone(), self.poll)?;
        let rpc = &self.rpc;
        let chain_id = provider
            .get_chain_id()
            .await
            .map_err(|e| Error::Chain(format!("eth_chainId via {rpc}: {e}")))?;
        let c = VeritraceAnchor::new(self.contract, &provider);
        let pending = match c.anchor(root, epoch_id, batch_count).send().await {
            Ok(p) => p,
            Err(e) => {
                if let Some(VeritraceAnchor::VeritraceAnchorErrors::AlreadyAnchored(a)) =
                    e.as_decoded_interface_error::<VeritraceAnchor::VeritraceAnchorErrors>()
                {
                    return Err(Error::Chain(format!(
                        "root {root} is already anchored in block {}",
                        a.blockNumber
                    )));
                }
                return Err(Error::Chain(format!(
                    "sending anchor({root}) via {rpc}: {e}"
                )));
            }
        };
        let (tx_hash, receipt) = mined(pending, "anchor tx").await?;
        let log = receipt
            .inner
            .logs()
            .iter()
            .find(|l| {
                l.address() == self.contract
                    && VeritraceAnchor::Anchored::decode_log(&l.inner).is_ok_and(|d| d.root == root)
            })
            .ok_or_else(|| {
                Error::Chain(format!(
                    "anchor tx {tx_hash} has no Anchored log for {root}"
                ))
            })?;
        Ok(EvmReceipt {
            chain_id,
            contract: self.contract,
            tx_hash,
            block_number: receipt.block_number.unwrap_or_default(),
            block_hash: receipt.block_hash.unwrap_or_default(),
            log_index: log.log_index.unwrap_or_default(),
        })
    }
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
