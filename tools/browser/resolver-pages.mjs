// Opens resolver pages in headless Chromium (Debian's /usr/bin/chromium, or $VERITRACE_CHROMIUM)
// and prints, per page, one JSON line of what a person sees: the HTTP status, the verdict
// banner (its text and data-verdict), the lifecycle state and the history entries.
//
//   node resolver-pages.mjs http://127.0.0.1:PORT /01/.../21/... [more paths]
import { chromium } from "playwright-core";

const [base, ...paths] = process.argv.slice(2);
if (!base || paths.length === 0) {
  console.error("usage: node resolver-pages.mjs BASE_URL PATH...");
  process.exit(2);
}
const executablePath = process.env.VERITRACE_CHROMIUM || "/usr/bin/chromium";
const browser = await chromium.launch({
  executablePath,
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
});
try {
  const page = await browser.newPage();
  for (const path of paths) {
    const resp = await page.goto(base + path, { waitUntil: "load", timeout: 30000 });
    const seen = await page.evaluate(() => {
      const text = (id) => document.getElementById(id)?.textContent ?? null;
      const verdict = document.getElementById("verdict");
      return {
        title: document.title,
        banner: verdict?.textContent ?? null,
        verdict: verdict?.dataset.verdict ?? null,
        colour: verdict ? getComputedStyle(verdict).backgroundColor : null,
        state: text("state"),
        signature: text("signature"),
        issued: text("issued"),
        proofs: text("proofs"),
        history: [...document.querySelectorAll("#history li")].map((li) => li.textContent),
      };
    });
    console.log(JSON.stringify({ path, status: resp?.status() ?? null, ...seen }));
  }
} finally {
  await browser.close();
}
