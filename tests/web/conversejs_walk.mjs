// Two people meet Suricate's /chat page (Converse.js over WebSocket) as a newcomer does: each
// registers in the page (XEP-0077), anna adds ben as a contact and ben accepts (subscription
// both ways), they chat both ways, anna opens a group chat that ben joins, and they talk there.
// Run by tests/web/test_conversejs_walk.py:
//   node conversejs_walk.mjs <playwright-core dir> <chat url> <suffix>
// Prints one JSON object on stdout: the steps reached, and every console error or warning,
// failed request and HTTP error the two pages met.
import { pathToFileURL } from "node:url";

const [pwDir, url, sfx] = process.argv.slice(2);
const { chromium } = await import(pathToFileURL(`${pwDir}/index.mjs`).href);
const problems = [];
const steps = [];
const anna = `anna${sfx}`, ben = `ben${sfx}`;
const annaJid = `${anna}@localhost`, benJid = `${ben}@localhost`;
const room = `walk${sfx}@conference.localhost`;

async function newPage(browser, who) {
  const page = await (await browser.newContext()).newPage();
  page.on("console", (m) => {
    if (m.type() === "error" || m.type() === "warning") {
      problems.push(`${who} ${m.type()}: ${m.text()}`);
    }
  });
  page.on("pageerror", (e) => problems.push(`${who} pageerror: ${e}`));
  page.on("requestfailed", (r) => problems.push(`${who} failed: ${r.url()}`));
  page.on("response", (r) => {
    if (r.status() >= 400) problems.push(`${who} HTTP ${r.status()} ${r.url()}`);
  });
  return page;
}

async function register(page, user) {
  await page.goto(`${url}#converse/register`);
  await page.fill('input[name="username"]', user, { timeout: 10000 });
  await page.fill('input[name="password"]', `pw-${user}`);
  await page.click('input[type="submit"]');
  await page.waitForSelector("converse-roster", { timeout: 10000 });  // registered, logged in
}

// Converse's own URL routes open a chat or a room (once: opening a room again while it is
// being joined loses the nickname Converse then registers with the room).
async function open(page, kind, jid, tag) {
  const box = `${tag}[jid="${jid}"]`;
  await page.evaluate(([k, j]) => { location.hash = `converse/${k}?jid=${j}`; }, [kind, jid]);
  await page.waitForSelector(`${box} textarea.chat-textarea, ${box} input[name="nick"]`,
                             { timeout: 5000 });
  return box;
}

async function say(page, box, text) {
  const area = `${box} textarea.chat-textarea`;
  await page.fill(area, text, { timeout: 5000 });
  // A box that is still being drawn may lose the key: press again while the text waits there.
  for (let i = 0; i < 10 && await page.inputValue(area) === text; i++) {
    await page.press(area, "Enter");
    await page.waitForFunction((a) => document.querySelector(a)?.value === "", area,
                               { timeout: 500 }).catch(() => null);
  }
}

const see = (page, box, text) =>
  page.waitForSelector(`${box} .chat-msg__text >> text=${text}`, { timeout: 5000 });

const rosterText = (page) => page.$eval("converse-roster", (e) => e.innerText);

async function main() {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
  });
  try {
    const A = await newPage(browser, "anna"), B = await newPage(browser, "ben");
    await register(A, anna);
    await register(B, ben);
    steps.push("registered");
    // anna adds ben; ben approves, and his page asks for anna's presence in return (which
    // Converse.js 14.0.0 alone forgets: see mod_conversejs's page); anna's page approves.
    await A.$eval("a.add-contact", (e) => e.click());
    await A.fill('converse-add-contact-modal input[name="jid"]', benJid);
    await A.click('converse-add-contact-modal button[type="submit"]');
    await B.waitForSelector("a.accept-xmpp-request", { state: "attached", timeout: 5000 });
    await B.$eval("a.accept-xmpp-request", (e) => e.click());
    await B.click('.modal.show button[type="submit"]');
    await A.waitForFunction(() => {
      const t = document.querySelector("converse-roster")?.innerText ?? "";
      return t.includes("ben") && !/Pending|request/i.test(t);
    }, null, { timeout: 5000 });
    await B.waitForFunction((j) => {
      const t = document.querySelector("converse-roster")?.innerText ?? "";
      return t.includes(j) && !/Pending|request/i.test(t);
    }, annaJid, { timeout: 5000 });
    steps.push("contacts");
    const toBen = await open(A, "chat", benJid, "converse-chat");
    await say(A, toBen, "hello ben");
    const toAnna = await open(B, "chat", annaJid, "converse-chat");
    await see(B, toAnna, "hello ben");
    await say(B, toAnna, "hello anna");
    await see(A, toBen, "hello anna");
    steps.push("chat");
    for (const [page, nick] of [[A, "anna"], [B, "ben"]]) {
      const box = await open(page, "room", room, "converse-muc");
      const nickInput = await page.$(`${box} input[name="nick"]`);
      if (nickInput) {
        await nickInput.fill(nick);
        await page.$eval(`${box} input[name="join"]`, (e) => e.click());
      }
      await page.waitForSelector(`${box} textarea.chat-textarea`, { timeout: 5000 });
    }
    const muc = `converse-muc[jid="${room}"]`;
    await say(A, muc, "welcome to the room");
    await see(B, muc, "welcome to the room");
    await say(B, muc, "thanks anna");
    await see(A, muc, "thanks anna");
    steps.push("groupchat");
    await A.waitForTimeout(300);  // the bookmark's publish answer, if it is an error
    return { steps, problems };
  } catch (e) {
    if (process.env.WALK_SHOTS) {
      for (const [i, p] of browser.contexts().entries()) {
        await p.pages()[0].screenshot({ path: `${process.env.WALK_SHOTS}/walk-${i}.png` });
      }
    }
    throw e;
  } finally {
    await browser.close();
  }
}

main().then((r) => { console.log(JSON.stringify(r)); process.exit(0); })
  .catch((err) => {
    console.log(JSON.stringify({ error: String(err?.stack ?? err), steps, problems }));
    process.exit(1);
  });
