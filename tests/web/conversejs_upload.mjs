// Converse.js in chromium sends a file with XEP-0363: logs in at <chat url>, opens a chat with
// <peer>, picks <file> in the upload button's file input, and reports the messages' links and
// the upload requests the page made (the PUT goes to another origin: CORS preflight).
// Run by tests/web/test_conversejs_upload.py:
//   node conversejs_upload.mjs <playwright-core dir> <chat url> <jid> <password> <peer> <file>
// Prints one JSON object on stdout.
import { pathToFileURL } from "node:url";

const [pwDir, url, jid, password, peer, file] = process.argv.slice(2);
const { chromium } = await import(pathToFileURL(`${pwDir}/index.mjs`).href);
const requests = [];

async function main() {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
  });
  try {
    // The upload listener's certificate is the test's own.
    const page = await (await browser.newContext({ ignoreHTTPSErrors: true })).newPage();
    page.on("response", (r) => {
      if (r.url().includes("/upload/")) requests.push(`${r.request().method()} ${r.status()}`);
    });
    await page.goto(url);
    await page.fill('input[name="jid"]', jid, { timeout: 15000 });
    await page.fill('input[name="password"]', password);
    await page.press('input[name="password"]', "Enter");
    const deadline = Date.now() + 20000;
    let textarea = null;
    while (!textarea && Date.now() < deadline) {
      await page.evaluate((p) => { location.hash = ""; location.hash = `converse/chat?jid=${p}`; },
                          peer);
      textarea = await page.waitForSelector("textarea.chat-textarea", { timeout: 1000 })
        .catch(() => null);
    }
    if (!textarea) throw new Error("no chat box: not logged in?");
    // The input exists once Converse found the upload service in the server's disco#items.
    await page.waitForSelector("input.fileupload", { state: "attached", timeout: 15000 });
    await page.setInputFiles("input.fileupload", file);
    // The sent message shows the picture from its GET URL.
    const img = await page.waitForSelector("img.chat-image", { timeout: 20000 });
    await page.waitForFunction((el) => el.complete && el.naturalWidth > 0, img, { timeout: 10000 });
    return { src: await img.getAttribute("src"), width: await img.evaluate((e) => e.naturalWidth),
             requests };
  } finally {
    await browser.close();
  }
}

main().then((r) => { console.log(JSON.stringify(r)); process.exit(0); })
  .catch((err) => {
    console.log(JSON.stringify({ error: String(err?.stack ?? err), requests }));
    process.exit(1);
  });
