// A real browser (Debian's chromium driven by playwright-core) on Suricate's /chat page:
// Converse.js logs in over WebSocket, sends a message to <peer> and waits for its reply; it
// also reports how the page's OMEMO library fetched its WebAssembly module.
// Run by tests/web/test_conversejs.py:
//   node conversejs.mjs <playwright-core dir> <chat url> <jid> <password> <peer> <screenshot>
// Prints one JSON object on stdout.
import { pathToFileURL } from "node:url";

const [pwDir, url, jid, password, peer, screenshot] = process.argv.slice(2);
const { chromium } = await import(pathToFileURL(`${pwDir}/index.mjs`).href);
const console_ = [];

async function main() {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
  });
  try {
    const page = await browser.newPage();
    page.on("console", (m) => console_.push(m.text()));
    page.on("response", (r) => { if (r.status() >= 400) console_.push(`${r.status()} ${r.url()}`); });
    page.on("pageerror", (e) => console_.push(`pageerror: ${e}`));
    // Once logged in, Converse loads its OMEMO library, which fetches a WebAssembly module
    // (curve25519_compiled.wasm) from where it thinks Converse's files are.
    const wasm = page.waitForResponse((r) => r.url().endsWith(".wasm"), { timeout: 30000 })
      .then((r) => ({ url: r.url(), status: r.status() }))
      .catch((e) => ({ error: String(e) }));
    await page.goto(url);
    await page.fill('input[name="jid"]', jid, { timeout: 15000 });
    await page.fill('input[name="password"]', password);
    await page.press('input[name="password"]', "Enter");
    // Open the chat by Converse's own URL route, once the session is up.
    const deadline = Date.now() + 20000;
    let textarea = null;
    while (!textarea && Date.now() < deadline) {
      await page.evaluate((p) => { location.hash = ""; location.hash = `converse/chat?jid=${p}`; },
                          peer);
      textarea = await page.waitForSelector("textarea.chat-textarea", { timeout: 1000 })
        .catch(() => null);
    }
    if (!textarea) throw new Error("no chat box: not logged in?");
    await textarea.fill("hello from converse");
    await textarea.press("Enter");
    const reply = await page.waitForSelector(".chat-msg__text >> text=echo: hello from converse",
                                             { timeout: 15000 });
    await page.screenshot({ path: screenshot, fullPage: true });
    return { reply: await reply.textContent(), wasm: await wasm,
             omemoErrors: console_.filter((line) => /OMEMO|wasm/i.test(line)) };
  } finally {
    await browser.close();
  }
}

main().then((r) => { console.log(JSON.stringify(r)); process.exit(0); })
  .catch((err) => {
    console.log(JSON.stringify({ error: String(err?.stack ?? err), console: console_.slice(-30) }));
    process.exit(1);
  });
