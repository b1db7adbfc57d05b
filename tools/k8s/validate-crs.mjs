// Validates custom resources against their CRD schemas: node validate-crs.mjs FILE.json, where
// FILE holds a JSON array of resources. The validators are generated from the upstream CRDs
// by kubernetes-models (pinned in package.json). Prints one line per resource; exits 1 when
// one fails or is of a kind without a schema here.
import { readFileSync } from "node:fs";

const PACKAGES = {
  "monitoring.coreos.com": "@kubernetes-models/prometheus-operator",
  "keda.sh": "@kubernetes-models/keda",
};

const resources = JSON.parse(readFileSync(process.argv[2], "utf8"));
let failed = 0;
for (const r of resources) {
  const name = `${r.kind}/${r.metadata?.name}`;
  const [group, version] = String(r.apiVersion).split("/");
  const pkg = PACKAGES[group];
  if (!pkg || !version) {
    console.log(`FAIL ${name}: no schema for ${r.apiVersion} ${r.kind}`);
    failed++;
    continue;
  }
  let Model;
  try {
    Model = (await import(`${pkg}/${group}/${version}/${r.kind}`))[r.kind];
  } catch (e) {
    console.log(`FAIL ${name}: no schema for ${r.apiVersion} ${r.kind} (${e.code ?? e.message})`);
    failed++;
    continue;
  }
  try {
    new Model(r).validate();
    console.log(`ok   ${name} (${r.apiVersion})`);
  } catch (e) {
    console.log(`FAIL ${name}: ${e.message}`);
    failed++;
  }
}
process.exit(failed ? 1 : 0);
