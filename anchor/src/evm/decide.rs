//! The EVM anchorer's decisions, without the chain: what to sign next, at which nonce, gas
//! and fees; when a pending transaction is replaced and at what price; what a transaction
//! the node no longer knows means; when an anchoring block counts as confirmed; what a
//! reorg means. Every function here is pure (numbers in, a decision out) and unit-tested;
//! [`super::engine`] asks the chain, calls these, and acts.

use std::collections::HashSet;
use std::time::Duration;

/// Transaction fees, in wei per gas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fees {
    /// EIP-1559: the most paid per gas, and the tip to the block producer within it.
    Eip1559 {
        /// `maxFeePerGas`.
        max: u128,
        /// `maxPriorityFeePerGas`.
        tip: u128,
    },
    /// A chain without a base fee: one gas price.
    Legacy {
        /// `gasPrice`.
        price: u128,
    },
}

impl Fees {
    /// The most this transaction may pay per gas.
    pub(crate) fn max_fee(&self) -> u128 {
        match *self {
            Fees::Eip1559 { max, .. } => max,
            Fees::Legacy { price } => price,
        }
    }
}

/// The operator's fee limits (`anchor.evm.max-fee-per-gas-gwei`,
/// `max-priority-fee-per-gas-gwei`), in wei per gas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FeeLimits {
    /// Never pay more per gas.
    pub(crate) max_fee: u128,
    /// Never tip more per gas.
    pub(crate) max_tip: u128,
}

/// What the chain asks for now: a base fee and the tip its node suggests (EIP-1559), or a
/// gas price (legacy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Market {
    /// The latest block's base fee, and the suggested tip (`None`: the node has no
    /// `eth_maxPriorityFeePerGas`; the configured tip is offered).
    Eip1559 {
        /// Base fee per gas of the latest block.
        base: u128,
        /// The node's suggested tip.
        suggested_tip: Option<u128>,
    },
    /// `eth_gasPrice`.
    Legacy {
        /// The gas price.
        price: u128,
    },
}

/// Fees above the operator's limit: epochs wait until fees drop.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(
    "{what} {asked:.3} gwei exceeds anchor.evm.max-fee-per-gas-gwei {limit:.3}; epochs wait until fees drop"
)]
pub(crate) struct FeesTooHigh {
    /// What the chain asks (`base fee plus tip`, `gas price`).
    pub(crate) what: &'static str,
    /// Asked, in gwei.
    pub(crate) asked: f64,
    /// The limit, in gwei.
    pub(crate) limit: f64,
}

fn gwei(wei: u128) -> f64 {
    wei as f64 / 1e9
}

/// The fees of a new transaction: a tip up to the limit and room for the base fee to
/// double (EIP-1559), or the gas price; refused above the limit.
pub(crate) fn quote(market: Market, limits: FeeLimits) -> Result<Fees, FeesTooHigh> {
    match market {
        Market::Eip1559 {
            base,
            suggested_tip,
        } => {
            let tip = suggested_tip.unwrap_or(limits.max_tip).min(limits.max_tip);
            if base.saturating_add(tip) > limits.max_fee {
                return Err(FeesTooHigh {
                    what: "base fee plus tip",
                    asked: gwei(base.saturating_add(tip)),
                    limit: gwei(limits.max_fee),
                });
            }
            Ok(Fees::Eip1559 {
                max: base
                    .saturating_mul(2)
                    .saturating_add(tip)
                    .min(limits.max_fee),
                tip,
            })
        }
        Market::Legacy { price } => {
            if price > limits.max_fee {
                return Err(FeesTooHigh {
                    what: "gas price",
                    asked: gwei(price),
                    limit: gwei(limits.max_fee),
                });
            }
            Ok(Fees::Legacy { price })
        }
    }
}

/// What to do with a transaction pending longer than `resubmit-after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Bump {
    /// Replace it (same nonce, same call) with these fees.
    Replace(Fees),
    /// The limit is reached: it stays pending, and the operator is told once.
    AtLimit,
}

/// The replacement fees of a stuck transaction: each fee raised by a quarter (nodes replace
/// a pending transaction only for a higher fee, commonly at least +10%) or to the market if
/// that is higher, within the limits. A chain that changed fee markets under a pending
/// transaction gets the market's fees.
pub(crate) fn bump(old: Fees, market: Fees, limits: FeeLimits) -> Bump {
    let up = |x: u128| x.saturating_add(x / 4).saturating_add(1);
    let (fees, at_limit) = match (old, market) {
        (Fees::Eip1559 { max, tip }, Fees::Eip1559 { max: m, tip: t }) => {
            let tip = up(tip).max(t).min(limits.max_tip);
            let max = up(max).max(m).min(limits.max_fee).max(tip);
            (Fees::Eip1559 { max, tip }, max <= old.max_fee())
        }
        (Fees::Legacy { price }, Fees::Legacy { price: p }) => {
            let price = up(price).max(p).min(limits.max_fee);
            (Fees::Legacy { price }, price <= old.max_fee())
        }
        (_, m) => (m, false),
    };
    if at_limit {
        Bump::AtLimit
    } else {
        Bump::Replace(fees)
    }
}

/// Whether the newest submission of an epoch is due for replacement.
pub(crate) fn due_for_replacement(
    newest: bool,
    pending_for: Duration,
    resubmit_after: Duration,
) -> bool {
    newest && pending_for > resubmit_after
}

/// An epoch as the submission plan sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EpochView {
    /// The epoch.
    pub(crate) epoch_id: u64,
    /// Anchored deeper than the reorg depth: nothing more to do, ever.
    pub(crate) settled: bool,
    /// Anchored (confirmed) and still watched for reorgs.
    pub(crate) anchored: bool,
    /// A transaction of it is pending or mined awaiting confirmations.
    pub(crate) in_flight: bool,
}

/// The epochs to sign now, in epoch order: those not anchored and not in flight, as many
/// as `max_in_flight` leaves room for beside the `in_flight` ones.
pub(crate) fn to_submit(epochs: &[EpochView], in_flight: usize, max_in_flight: usize) -> Vec<u64> {
    let budget = max_in_flight.max(1).saturating_sub(in_flight);
    epochs
        .iter()
        .filter(|e| !e.settled && !e.anchored && !e.in_flight)
        .take(budget)
        .map(|e| e.epoch_id)
        .collect()
}

/// The nonce of the next transaction: the account's pending nonce, or the next one that
/// no unanchored submission of ours holds. The nonce is marked as used.
pub(crate) fn next_nonce(pending: u64, used: &mut HashSet<u64>) -> u64 {
    let mut nonce = pending;
    while used.contains(&nonce) {
        nonce += 1;
    }
    used.insert(nonce);
    nonce
}

/// A gas estimate above the operator's limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("anchoring epoch {epoch_id} needs {estimate} gas, above anchor.evm.gas-limit {limit}")]
pub(crate) struct GasTooHigh {
    /// The epoch.
    pub(crate) epoch_id: u64,
    /// The node's estimate.
    pub(crate) estimate: u64,
    /// `anchor.evm.gas-limit`.
    pub(crate) limit: u64,
}

/// The gas limit of a transaction: the estimate plus a fifth (state may change between
/// estimate and inclusion), capped by the limit; refused when the estimate is over it.
pub(crate) fn gas_for(epoch_id: u64, estimate: u64, limit: u64) -> Result<u64, GasTooHigh> {
    if estimate > limit {
        return Err(GasTooHigh {
            epoch_id,
            estimate,
            limit,
        });
    }
    Ok(estimate.saturating_add(estimate / 5).min(limit))
}

/// A submission the node neither mined nor knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Vanished {
    /// The account's mined nonce has not reached it: the node forgot it (restarted, evicted
    /// it, or it never arrived). The same signed bytes go out again; they land once at most.
    Rebroadcast,
    /// Its nonce was used by another transaction: if the root is on chain, that one
    /// anchored it (adopt it); if not, this submission is abandoned.
    NonceUsed,
}

/// What a submission with `nonce` that the node no longer knows means, given the account's
/// mined transaction count `latest`.
pub(crate) fn vanished(latest: u64, nonce: u64) -> Vanished {
    if latest <= nonce {
        Vanished::Rebroadcast
    } else {
        Vanished::NonceUsed
    }
}

/// Where a mined anchoring transaction stands against the chain head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Confirmation {
    /// The head is below its block (the node rewound): follow the transaction again.
    BlockAhead,
    /// Not enough confirmations yet.
    Wait,
    /// Enough: if its block is still canonical, the epoch is anchored with this many.
    Check(u64),
}

/// Whether the block `block` has the `required` confirmations at `head` (the block itself
/// counts as one).
pub(crate) fn confirmation(head: u64, block: u64, required: u64) -> Confirmation {
    if head < block {
        return Confirmation::BlockAhead;
    }
    let confirmations = head - block + 1;
    if confirmations < required.max(1) {
        Confirmation::Wait
    } else {
        Confirmation::Check(confirmations)
    }
}

/// What became of an anchored epoch's block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reorg {
    /// Deeper than `reorg-depth` below the head: final, no longer watched.
    Settled,
    /// Its block still has the receipt's hash (or must be fetched to know: see
    /// [`reorg_block_to_check`]).
    Holds,
    /// Its block left the canonical chain: the epoch is anchored again. `detail` says what
    /// the chain shows instead.
    Reorged {
        /// What the chain shows.
        detail: String,
    },
}

/// Whether the block of an anchored epoch must be fetched to check it: `false` when the
/// epoch is settled (deeper than `depth`) or the head is below the block.
pub(crate) fn reorg_block_to_check(block: u64, head: u64, depth: u64) -> bool {
    block.saturating_add(depth) >= head && head >= block
}

/// What a reorg check finds for a receipt in `block` with hash `receipt_hash`, the chain
/// at `head` (watched to `depth` blocks) whose block `block` now has `canonical` (`None`
/// when not fetched because the head is below it).
pub(crate) fn reorg(
    block: u64,
    receipt_hash: &str,
    head: u64,
    depth: u64,
    canonical: Option<&str>,
) -> Reorg {
    if block.saturating_add(depth) < head {
        return Reorg::Settled;
    }
    match canonical {
        Some(h) if h.eq_ignore_ascii_case(receipt_hash) => Reorg::Holds,
        Some(h) => Reorg::Reorged {
            detail: format!("block {block} is now {h}"),
        },
        None if head < block => Reorg::Reorged {
            detail: format!("the chain head {head} is below block {block}"),
        },
        None => Reorg::Reorged {
            detail: format!("the chain has no block {block}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GWEI: u128 = 1_000_000_000;
    const LIMITS: FeeLimits = FeeLimits {
        max_fee: 100 * GWEI,
        max_tip: 2 * GWEI,
    };

    #[test]
    fn quotes_leave_room_for_the_base_fee_and_respect_the_limits() {
        let q = quote(
            Market::Eip1559 {
                base: 10 * GWEI,
                suggested_tip: Some(GWEI),
            },
            LIMITS,
        );
        assert_eq!(
            q,
            Ok(Fees::Eip1559 {
                max: 21 * GWEI,
                tip: GWEI
            })
        );
        // A greedy node's tip is capped; a node without a suggestion gets the configured tip.
        let q = quote(
            Market::Eip1559 {
                base: 10 * GWEI,
                suggested_tip: Some(50 * GWEI),
            },
            LIMITS,
        );
        assert_eq!(
            q,
            Ok(Fees::Eip1559 {
                max: 22 * GWEI,
                tip: 2 * GWEI
            })
        );
        let q = quote(
            Market::Eip1559 {
                base: 10 * GWEI,
                suggested_tip: None,
            },
            LIMITS,
        );
        assert_eq!(q.map(|f| f.max_fee()), Ok(22 * GWEI));
        // Room to double is capped at the limit.
        let q = quote(
            Market::Eip1559 {
                base: 60 * GWEI,
                suggested_tip: Some(GWEI),
            },
            LIMITS,
        );
        assert_eq!(q.map(|f| f.max_fee()), Ok(100 * GWEI));
        // Over the limit: refused, with the numbers.
        let e = quote(
            Market::Eip1559 {
                base: 99 * GWEI,
                suggested_tip: Some(2 * GWEI),
            },
            LIMITS,
        )
        .expect_err("over the limit");
        assert_eq!(e.what, "base fee plus tip");
        assert!(e.to_string().contains("101.000 gwei exceeds"), "{e}");
        assert_eq!(
            quote(Market::Legacy { price: 5 * GWEI }, LIMITS),
            Ok(Fees::Legacy { price: 5 * GWEI })
        );
        assert!(quote(Market::Legacy { price: 101 * GWEI }, LIMITS).is_err());
    }

    #[test]
    fn a_stuck_transaction_is_replaced_a_quarter_higher_until_the_limit() {
        let old = Fees::Eip1559 {
            max: 20 * GWEI,
            tip: GWEI,
        };
        let market = Fees::Eip1559 {
            max: 10 * GWEI,
            tip: GWEI / 2,
        };
        assert_eq!(
            bump(old, market, LIMITS),
            Bump::Replace(Fees::Eip1559 {
                max: 25 * GWEI + 1,
                tip: GWEI + GWEI / 4 + 1
            })
        );
        // The market moved above a quarter more: follow the market.
        let hot = Fees::Eip1559 {
            max: 40 * GWEI,
            tip: GWEI,
        };
        assert_eq!(
            bump(old, hot, LIMITS),
            Bump::Replace(Fees::Eip1559 {
                max: 40 * GWEI,
                tip: GWEI + GWEI / 4 + 1
            })
        );
        // At the limit already: no replacement (it would not be accepted as higher).
        let maxed = Fees::Eip1559 {
            max: 100 * GWEI,
            tip: 2 * GWEI,
        };
        assert_eq!(bump(maxed, market, LIMITS), Bump::AtLimit);
        // Below the limit, the replacement is capped at it.
        let near = Fees::Eip1559 {
            max: 90 * GWEI,
            tip: GWEI,
        };
        assert_eq!(
            bump(near, market, LIMITS),
            Bump::Replace(Fees::Eip1559 {
                max: 100 * GWEI,
                tip: GWEI + GWEI / 4 + 1
            })
        );
        assert_eq!(
            bump(
                Fees::Legacy { price: 8 * GWEI },
                Fees::Legacy { price: GWEI },
                LIMITS
            ),
            Bump::Replace(Fees::Legacy {
                price: 10 * GWEI + 1
            })
        );
        // The chain switched fee markets: offer the market's fees.
        assert_eq!(
            bump(Fees::Legacy { price: 8 * GWEI }, market, LIMITS),
            Bump::Replace(market)
        );
        // Only the newest submission, and only once it waited long enough.
        let wait = Duration::from_secs(60);
        assert!(due_for_replacement(true, Duration::from_secs(61), wait));
        assert!(!due_for_replacement(true, Duration::from_secs(59), wait));
        assert!(!due_for_replacement(false, Duration::from_secs(600), wait));
    }

    fn view(epoch_id: u64, settled: bool, anchored: bool, in_flight: bool) -> EpochView {
        EpochView {
            epoch_id,
            settled,
            anchored,
            in_flight,
        }
    }

    #[test]
    fn the_next_epochs_are_signed_in_order_within_the_in_flight_budget() {
        let epochs = [
            view(0, true, true, false),
            view(1, false, true, false),
            view(2, false, false, true),
            view(3, false, false, false),
            view(4, false, false, false),
            view(5, false, false, false),
        ];
        assert_eq!(to_submit(&epochs, 1, 3), [3, 4]);
        assert_eq!(to_submit(&epochs, 1, 1), Vec::<u64>::new());
        // A budget of 0 still lets one through when nothing is in flight.
        assert_eq!(to_submit(&epochs[3..], 0, 0), [3]);
        assert_eq!(to_submit(&[], 0, 4), Vec::<u64>::new());
    }

    #[test]
    fn nonces_skip_those_our_pending_submissions_hold() {
        let mut used = HashSet::from([7, 8, 10]);
        assert_eq!(next_nonce(7, &mut used), 9);
        assert_eq!(next_nonce(7, &mut used), 11);
        assert_eq!(next_nonce(12, &mut used), 12);
        assert!(used.contains(&12));
    }

    #[test]
    fn gas_has_a_fifth_of_headroom_within_the_limit() {
        assert_eq!(gas_for(1, 50_000, 200_000), Ok(60_000));
        assert_eq!(gas_for(1, 190_000, 200_000), Ok(200_000));
        let e = gas_for(4, 250_000, 200_000).expect_err("over");
        assert_eq!(
            e.to_string(),
            "anchoring epoch 4 needs 250000 gas, above anchor.evm.gas-limit 200000"
        );
    }

    #[test]
    fn a_forgotten_transaction_is_sent_again_unless_its_nonce_was_used() {
        assert_eq!(vanished(5, 5), Vanished::Rebroadcast);
        assert_eq!(vanished(3, 5), Vanished::Rebroadcast);
        assert_eq!(vanished(6, 5), Vanished::NonceUsed);
    }

    #[test]
    fn confirmations_count_the_block_itself() {
        assert_eq!(confirmation(10, 10, 1), Confirmation::Check(1));
        assert_eq!(confirmation(10, 10, 0), Confirmation::Check(1));
        assert_eq!(confirmation(11, 10, 3), Confirmation::Wait);
        assert_eq!(confirmation(12, 10, 3), Confirmation::Check(3));
        assert_eq!(confirmation(9, 10, 1), Confirmation::BlockAhead);
    }

    #[test]
    fn a_reorg_is_a_changed_or_missing_block_within_the_watched_depth() {
        let h = "0xabc";
        // Deeper than the depth: settled, whatever the chain says.
        assert_eq!(reorg(10, h, 30, 12, None), Reorg::Settled);
        assert!(!reorg_block_to_check(10, 30, 12));
        assert!(reorg_block_to_check(10, 22, 12));
        assert!(!reorg_block_to_check(10, 9, 12));
        assert_eq!(reorg(10, h, 15, 12, Some("0xABC")), Reorg::Holds);
        assert_eq!(
            reorg(10, h, 15, 12, Some("0xdef")),
            Reorg::Reorged {
                detail: "block 10 is now 0xdef".into()
            }
        );
        assert_eq!(
            reorg(10, h, 8, 12, None),
            Reorg::Reorged {
                detail: "the chain head 8 is below block 10".into()
            }
        );
        assert_eq!(
            reorg(10, h, 15, 12, None),
            Reorg::Reorged {
                detail: "the chain has no block 10".into()
            }
        );
    }
}
