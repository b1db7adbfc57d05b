// Verification rate in the browser: loads /verify in headless Chromium and verifies FILE
// N times through the page's WebAssembly module (window.veritraceVerify), with the options
// given, timing it in the page. Prints one JSON line: {"file", "n", "ms", "per_second"}.
//   node verify-bench.mjs URL N OPTIONS_JSON FILE
import { chromium } from "playwright-core";
import fs from "node:fs";
import path from "node:path";

const [url, n, optsJson, file] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.VERITRACE_CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox"],
});
try {
  const page = await browser.newPage();
  await page.goto(url);
  const opts = JSON.parse(optsJson || "{}");
  if (opts.key) await page.fill("#key", opts.key);
  if (opts.ledger) await page.setInputFiles("#ledger", opts.ledger);
  const bytes = [...fs.readFileSync(file)];
  const r = await page.evaluate(async ([bytes, n, name]) => {
    const b = new Uint8Array(bytes);
    const first = await window.veritraceVerify(name, b);
    const t = performance.now();
    for (let i = 0; i < n; i++) await window.veritraceVerify(name, b);
    const ms = performance.now() - t;
    return { valid: first.valid, anchored: first.anchored, ms, per_second: (n / ms) * 1000 };
  }, [bytes, Number(n), path.basename(file)]);
  console.log(JSON.stringify({ file: path.basename(file), n: Number(n), ...r }));
} finally {
  await browser.close();
}
