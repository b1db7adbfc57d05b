//! The anchor contract on a real EVM node (Anvil from tools/evm, started by the testkit on
//! a free loopback port and stopped when the test ends): deploy, anchor, look up, and the refusals.

use alloy::primitives::{B256, U256};
use alloy::providers::ProviderBuilder;
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::SolEvent;

use veritrace_anchor::evm::VeritraceAnchor;
use veritrace_testkit::anvil::Anvil;

fn anvil() -> Anvil {
    Anvil::start(&[])
}

/// The node's URL, as alloy's providers take it.
fn endpoint(node: &Anvil) -> alloy::transports::http::reqwest::Url {
    node.url().parse().expect("anvil url")
}

/// A provider for `signer`. Nonces are read from the chain for every transaction: alloy's
/// default cached nonce manager consumes a nonce even when gas estimation fails (a revert),
/// and the next transaction then waits forever behind the gap.
fn provider(
    signer: PrivateKeySigner,
    url: alloy::transports::http::reqwest::Url,
) -> impl alloy::providers::Provider + Clone {
    ProviderBuilder::default()
        .with_gas_estimation()
        .with_simple_nonce_management()
        .fetch_chain_id()
        .wallet(signer)
        .connect_http(url)
}

#[tokio::test]
async fn anchors_once_per_root_and_only_for_writers() {
    let node = anvil();
    let owner: PrivateKeySigner = node.keys()[0].parse().expect("dev key");
    let stranger: PrivateKeySigner = node.keys()[1].parse().expect("dev key");
    let writer: PrivateKeySigner = node.keys()[2].parse().expect("dev key");
    let p = provider(owner, endpoint(&node));
    let c = VeritraceAnchor::deploy(&p).await.expect("deploy");

    let root = B256::repeat_byte(0xab);
    assert_eq!(c.anchoredAt(root).call().await.expect("lookup"), U256::ZERO);
    let receipt = c
        .anchor(root, 7, 12)
        .send()
        .await
        .expect("send")
        .get_receipt()
        .await
        .expect("receipt");
    assert!(receipt.status());
    let block = receipt.block_number.expect("mined");
    assert_eq!(
        c.anchoredAt(root).call().await.expect("lookup"),
        U256::from(block)
    );
    let log = receipt
        .inner
        .logs()
        .iter()
        .find_map(|l| VeritraceAnchor::Anchored::decode_log(&l.inner).ok())
        .expect("Anchored log");
    assert_eq!((log.root, log.epochId, log.batchCount), (root, 7, 12));

    // The same root again: AlreadyAnchored, naming the first block.
    let again = c
        .anchor(root, 8, 1)
        .send()
        .await
        .expect_err("re-anchoring must revert");
    let e = again
        .as_decoded_interface_error::<VeritraceAnchor::VeritraceAnchorErrors>()
        .expect("custom error");
    assert!(
        matches!(e, VeritraceAnchor::VeritraceAnchorErrors::AlreadyAnchored(ref a) if a.root == root && a.blockNumber == U256::from(block)),
        "{e:?}"
    );

    // A stranger cannot anchor; a writer the owner allowed can.
    let as_stranger =
        VeritraceAnchor::new(*c.address(), provider(stranger.clone(), endpoint(&node)));
    let refused = as_stranger
        .anchor(B256::repeat_byte(1), 9, 1)
        .send()
        .await
        .expect_err("a stranger must be refused");
    let e = refused
        .as_decoded_interface_error::<VeritraceAnchor::VeritraceAnchorErrors>()
        .expect("custom error");
    assert!(
        matches!(e, VeritraceAnchor::VeritraceAnchorErrors::NotWriter(ref n) if n.caller == stranger.address()),
        "{e:?}"
    );
    c.setWriter(writer.address(), true)
        .send()
        .await
        .expect("send")
        .get_receipt()
        .await
        .expect("receipt");
    let as_writer = VeritraceAnchor::new(*c.address(), provider(writer, endpoint(&node)));
    let r = as_writer
        .anchor(B256::repeat_byte(2), 9, 3)
        .send()
        .await
        .expect("send")
        .get_receipt()
        .await
        .expect("receipt");
    assert!(r.status());
    // The zero root is never an epoch root.
    assert!(c.anchor(B256::ZERO, 10, 1).send().await.is_err());
}

#[tokio::test]
async fn the_deploy_operation_creates_the_contract_owned_by_the_key() {
    use alloy::providers::Provider;
    let node = anvil();
    let key: PrivateKeySigner = node.keys()[3].parse().expect("dev key");
    let owner = key.address();
    let d = veritrace_anchor::evm::deploy(
        node.url().as_str(),
        key,
        std::time::Duration::from_millis(50),
    )
    .await
    .expect("deploy");
    assert_eq!(d.chain_id, node.chain_id());
    assert_eq!(d.owner, owner);
    let p = ProviderBuilder::new().connect_http(endpoint(&node));
    let code = p.get_code_at(d.contract).await.expect("code");
    assert!(!code.is_empty(), "no code at {}", d.contract);
    let c = VeritraceAnchor::new(d.contract, &p);
    assert_eq!(c.owner().call().await.expect("owner"), owner);

    // A chain that is not there is a clear error, not a hang.
    let key: PrivateKeySigner = node.keys()[4].parse().expect("dev key");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let e = veritrace_anchor::evm::deploy(
        &format!("http://127.0.0.1:{port}"),
        key,
        std::time::Duration::from_millis(50),
    )
    .await
    .expect_err("no chain");
    assert!(e.to_string().contains("eth_chainId"), "{e}");
}
