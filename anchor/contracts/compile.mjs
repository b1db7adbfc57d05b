// Compiles VeritraceAnchor.sol with the pinned solcjs through the standard-JSON API and
// writes the artifact Rust embeds (ABI + bytecode), so `cargo build` never needs node.
//
//   node anchor/contracts/compile.mjs           write VeritraceAnchor.json
//   node anchor/contracts/compile.mjs --check   exit 1 if the committed artifact differs
//
// Run with tools/evm installed (`npm ci --prefix tools/evm`).
import { createHash } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(join(here, "..", "..", "tools", "evm", "package.json"));
const solc = require("solc");

// Pinned: the EVM version decides which opcodes the bytecode may use. Paris (no PUSH0)
// keeps the contract deployable on consortium chains (Besu, Quorum) that lag mainnet.
const EVM_VERSION = "paris";
const SOURCE = "VeritraceAnchor.sol";
const source = readFileSync(join(here, SOURCE), "utf8");

const input = {
  language: "Solidity",
  sources: { [SOURCE]: { content: source } },
  settings: {
    evmVersion: EVM_VERSION,
    optimizer: { enabled: true, runs: 200 },
    metadata: { bytecodeHash: "none" },
    outputSelection: { "*": { VeritraceAnchor: ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"] } },
  },
};
const output = JSON.parse(solc.compile(JSON.stringify(input)));
const errors = (output.errors || []).filter((e) => e.severity === "error");
for (const e of output.errors || []) console.error(e.formattedMessage);
if (errors.length > 0) process.exit(2);
const c = output.contracts[SOURCE].VeritraceAnchor;
const artifact = {
  contractName: "VeritraceAnchor",
  compiler: `solc ${solc.version()}`,
  evmVersion: EVM_VERSION,
  optimizer: input.settings.optimizer,
  sourceSha256: createHash("sha256").update(source).digest("hex"),
  abi: c.abi,
  bytecode: "0x" + c.evm.bytecode.object,
  deployedBytecode: "0x" + c.evm.deployedBytecode.object,
};
const text = JSON.stringify(artifact, null, 2) + "\n";
const path = join(here, "VeritraceAnchor.json");
if (process.argv.includes("--check")) {
  const committed = readFileSync(path, "utf8");
  if (committed !== text) {
    console.error(`${path} differs from a fresh compile of ${SOURCE}; run: node anchor/contracts/compile.mjs`);
    process.exit(1);
  }
  console.log(`${path} matches a fresh compile (${artifact.compiler}, evm ${EVM_VERSION})`);
} else {
  writeFileSync(path, text);
  console.log(`wrote ${path} (${artifact.compiler}, evm ${EVM_VERSION})`);
}
