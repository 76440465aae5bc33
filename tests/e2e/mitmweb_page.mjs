// Drives mitmweb's page in headless Chromium (playwright-core) for tests/e2e/test_mitmweb.py.
// Usage: node mitmweb_page.mjs URL SCREENSHOT [WAIT_FOR_TEXT] [REPLAY_ROW_WITH_TEXT] [DETAIL_ROW_WITH_TEXT]
// Prints `ready` once the page is open (the test may then start traffic the open page must follow), then one
// JSON line: the flow list's rows as the page shows them (no clicking), and after a replay (row selected,
// `r` pressed, as a user does) the rows again.
import { chromium } from "playwright-core";

const [url, screenshot, waitFor, replayRow, detailRow] = process.argv.slice(2);
const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: ["--no-sandbox", "--disable-gpu"] });
try {
  const page = await browser.newPage({ viewport: { width: 1800, height: 640 } });
  await page.goto(url);
  await page.waitForSelector(".main-view", { state: "attached", timeout: 20000 });
  // The list has been fetched once it shows rows or says it has none: pushed updates are followed from here.
  await page.waitForFunction(() => document.querySelector(".flow-table td.col-path") || document.body.innerText.includes("No flows"), null, {
    timeout: 20000,
  });
  console.log("ready");
  let found = true;
  if (waitFor) {
    found = await page
      .waitForFunction((t) => !!document.querySelector(".flow-table")?.innerText.includes(t), waitFor, { timeout: 20000 })
      .then(() => true, () => false); // the rows are reported either way, for the test to say what was there
  }
  const rows = () =>
    page.$$eval(".flow-table tbody tr", (trs) =>
      trs
        .filter((tr) => tr.querySelector(".col-path"))
        .map((tr) => {
          const cell = (name) => tr.querySelector(`.col-${name}`)?.innerText ?? null;
          const marker = tr.querySelector(".col-path .marker")?.innerText ?? "";
          const comment = tr.querySelector(".col-comment");
          return {
            path: cell("path"),
            status: cell("status"),
            time: cell("time"),
            comment: cell("comment"),
            commentVisible: !!comment && comment.getBoundingClientRect().width > 100,
            marker,
          };
        }),
    );
  const before = await rows();
  await page.screenshot({ path: screenshot });
  // What a user sees after double-clicks on the Path and Comment columns' edges (mitmweb fits each to its content).
  for (const col of ["path", "comment"]) {
    const handle = page.locator(`th.col-${col} .col-resize-handle`).first();
    if ((await handle.count()) > 0) await handle.dblclick();
  }
  await page.screenshot({ path: screenshot.replace(/\.png$/, "-wide.png") });
  let after = null;
  if (replayRow) {
    const row = page.locator(".flow-table tbody tr", { hasText: replayRow }).first();
    await row.click();
    await page.keyboard.press("r");
    await page.waitForFunction(
      (t) =>
        [...document.querySelectorAll(".flow-table tbody tr")].some(
          (tr) => tr.innerText.includes(t) && tr.querySelector(".col-status")?.innerText.trim(),
        ),
      "(replayed)",
      { timeout: 20000 },
    ); // answered again
    after = await rows();
    await page.screenshot({ path: screenshot.replace(/\.png$/, "-replayed.png") });
  }
  let detail = null;
  if (detailRow) {
    // One click on a row: its Response tab, in the view cliproxy picks by itself.
    await page.locator(".flow-table tbody tr", { hasText: detailRow }).first().click();
    await page.getByText("Response", { exact: true }).first().click();
    await page.waitForFunction(() => document.querySelector(".flow-detail")?.innerText.includes("── the answer"), null, { timeout: 20000 });
    detail = await page.$eval(".flow-detail", (d) => d.innerText);
    await page.screenshot({ path: screenshot.replace(/\.png$/, "-detail.png") });
  }
  console.log(JSON.stringify({ found, before, after, detail }));
} finally {
  await browser.close();
}
