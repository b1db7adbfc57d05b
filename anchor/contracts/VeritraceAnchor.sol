// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

/// @title VeritraceAnchor
/// @notice The public witness of Veritrace epochs: each epoch's Merkle root (over its batch
/// roots, which cover every accepted event) is written here once, by an allowed writer.
/// Auditors read the root back (`anchoredAt`) and the `Anchored` log of the transaction
/// named in a proof bundle's receipt. One small transaction per epoch, whatever the
/// number of events.
contract VeritraceAnchor {
    /// @notice An epoch root was anchored in this block.
    event Anchored(bytes32 indexed root, uint64 epochId, uint64 batchCount);
    /// @notice `writer` may (or may no longer) anchor.
    event WriterSet(address indexed writer, bool allowed);
    /// @notice Ownership moved.
    event OwnershipTransferred(address indexed previousOwner, address indexed newOwner);

    /// @notice The root was already anchored (in `blockNumber`); anchoring is once per root.
    error AlreadyAnchored(bytes32 root, uint256 blockNumber);
    /// @notice `caller` is not the owner nor an allowed writer.
    error NotWriter(address caller);
    /// @notice `caller` is not the owner.
    error NotOwner(address caller);
    /// @notice The zero root is never a valid epoch root.
    error ZeroRoot();
    /// @notice The zero address cannot own the contract.
    error ZeroOwner();

    /// @notice Who manages writers.
    address public owner;
    /// @notice Addresses allowed to anchor besides the owner.
    mapping(address => bool) public isWriter;
    /// @dev root => block number it was anchored in (0: never).
    mapping(bytes32 => uint256) private anchoredBlock;

    constructor() {
        owner = msg.sender;
        emit OwnershipTransferred(address(0), msg.sender);
    }

    modifier onlyOwner() {
        if (msg.sender != owner) revert NotOwner(msg.sender);
        _;
    }

    /// @notice Anchors one epoch root. Reverts if the root is zero, already anchored, or the
    /// caller may not write.
    function anchor(bytes32 root, uint64 epochId, uint64 batchCount) external {
        if (msg.sender != owner && !isWriter[msg.sender]) revert NotWriter(msg.sender);
        if (root == bytes32(0)) revert ZeroRoot();
        uint256 existing = anchoredBlock[root];
        if (existing != 0) revert AlreadyAnchored(root, existing);
        anchoredBlock[root] = block.number;
        emit Anchored(root, epochId, batchCount);
    }

    /// @notice The block a root was anchored in, 0 if never.
    function anchoredAt(bytes32 root) external view returns (uint256) {
        return anchoredBlock[root];
    }

    /// @notice Allows or disallows a writer.
    function setWriter(address writer, bool allowed) external onlyOwner {
        isWriter[writer] = allowed;
        emit WriterSet(writer, allowed);
    }

    /// @notice Hands ownership to `newOwner`.
    function transferOwnership(address newOwner) external onlyOwner {
        if (newOwner == address(0)) revert ZeroOwner();
        emit OwnershipTransferred(owner, newOwner);
        owner = newOwner;
    }
}
