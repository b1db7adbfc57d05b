// Verifies files on the /verify page in headless Chromium (Debian's, no download):
//   node verify-page.mjs URL SHOTS_DIR OPTIONS_JSON FILE...
// OPTIONS_JSON: {"key": hex, "ledger": path, "witnesses": [..], "quorum": n, "rpc": url,
// "contract": address} (fields optional). Without "rpc" the page is loaded once, saved, and
// reloaded from the saved copy with the network cut, so what is checked is what a saved copy
// does offline; with it, the page asks the chain from the browser. For each file: one JSON line with the
// verdict (data-verdict), its code, the headline and the check lines; a screenshot in SHOTS_DIR.
import { chromium } from "playwright-core";
import fs from "node:fs";
import path from "node:path";

const [url, shots, optsJson, ...files] = process.argv.slice(2);
const opts = JSON.parse(optsJson || "{}");
const browser = await chromium.launch({
  executablePath: process.env.VERITRACE_CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox"],
});
try {
  const context = await browser.newContext();
  const page = await context.newPage();
  const resp = await page.goto(url);
  if (!resp.ok()) throw new Error(`GET ${url}: ${resp.status()}`);
  if (!opts.rpc) {
    // Offline, from a saved copy: what an auditor's copy of the page does.
    const saved = path.join(shots, "verify-saved.html");
    fs.writeFileSync(saved, await resp.body());
    await context.setOffline(true);
    await page.goto("file://" + saved);
  } else {
    await page.fill("#rpc", opts.rpc);
    if (opts.contract) await page.fill("#contract", opts.contract);
  }
  if (opts.key) await page.fill("#key", opts.key);
  if (opts.ledger) await page.setInputFiles("#ledger", opts.ledger);
  if (opts.witnesses) await page.fill("#witnesses", opts.witnesses.join("\n"));
  if (opts.quorum) await page.fill("#quorum", String(opts.quorum));
  let i = 0;
  for (const f of files) {
    await page.evaluate(() => { document.getElementById("verdict").dataset.verdict = "pending"; });
    await page.setInputFiles("#file", f);
    await page.waitForFunction(() => document.getElementById("verdict").dataset.verdict !== "pending", null, { timeout: 30000 });
    const r = await page.evaluate(() => {
      const v = document.getElementById("verdict");
      return {
        verdict: v.dataset.verdict,
        code: v.dataset.code || null,
        headline: v.textContent,
        checks: [...document.querySelectorAll("#checks li")].map(li => `${li.className} ${li.textContent}`),
      };
    });
    await page.screenshot({ path: path.join(shots, `verify-${i++}-${path.basename(f)}.png`), fullPage: true });
    console.log(JSON.stringify({ file: path.basename(f), ...r }));
  }
} finally {
  await browser.close();
}
