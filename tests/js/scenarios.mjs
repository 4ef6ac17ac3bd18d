// End-to-end scenarios of Suricate with xmpp.js (@xmpp/client 0.14): SASL2 + Bind 2 + FAST.
// Run by tests/mobile/test_xmppjs.py, which starts the server:
//   node tests/js/scenarios.mjs <scenario> <service> <username> <password>
// Prints one JSON object on stdout; the Python test asserts on it.
import { client, xml } from "@xmpp/client";

const [scenario, service, username, password] = process.argv.slice(2);
const SASL2 = "urn:xmpp:sasl:2";
const FAST = "urn:xmpp:fast:0";

// One client connection; `wire` records every top-level element both ways, in order.
async function connect({ token = null, withPassword = true, agentId, tweak } = {}) {
  let saved = token;
  const xmpp = client({
    service,
    domain: "localhost",
    username,
    password: withPassword ? password : undefined,
    resource: "xmppjs",
    userAgent: xml("user-agent", { id: agentId }, xml("software", {}, "xmpp.js")),
  });
  xmpp.fast.saveToken = async (t) => { saved = t; };
  xmpp.fast.fetchToken = async () => saved;
  xmpp.fast.deleteToken = async () => { saved = null; };
  xmpp.reconnect.stop();
  const wire = [];
  // xmpp.js emits "send" right after writing an element (so never edit elements in an
  // outgoing middleware: the edit would show here but not on the wire)
  xmpp.on("send", (el) => wire.push(["out", el.toString()]));
  xmpp.on("element", (el) => wire.push(["in", el.toString()]));
  if (tweak) tweak(xmpp);
  await startClient(xmpp);
  return { xmpp, wire, token: () => saved };
}

// xmpp.start() registers its wait for the stream "open" event only after the header write
// completes; with a server that answers within the same tick (ours does, over loopback) the
// event can come first and start() times out although the client is online. So wait for
// "online" (or the first error) ourselves.
function startClient(xmpp) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("not online after 10 s")), 10000);
    xmpp.once("online", () => { clearTimeout(timer); resolve(); });
    xmpp.on("error", (err) => { clearTimeout(timer); reject(err); });
    xmpp.start().catch((err) => {
      if (err?.name !== "TimeoutError") { clearTimeout(timer); reject(err); }
    });
  });
}

// The exchange from <authenticate/> to <success/>: how many times the client had to wait.
function authExchange(wire) {
  const start = wire.findIndex(([d, x]) => d === "out" && x.startsWith("<authenticate"));
  const end = wire.findIndex(([d, x], i) => i > start && d === "in" && x.startsWith("<success"));
  const between = wire.slice(start + 1, end);
  return {
    authenticate: wire[start]?.[1] ?? null,
    success: wire[end]?.[1] ?? null,
    // client messages sent after <authenticate/> and before <success/>: 0 = one round trip
    clientMessagesInBetween: between.filter(([d]) => d === "out").length,
    serverMessagesInBetween: between.filter(([d]) => d === "in").length,
  };
}

function failures(wire) {
  return wire.filter(([d, x]) => d === "in" && x.startsWith("<failure")).map(([, x]) => x);
}

async function stop(c) {
  try { await c.xmpp.stop(); } catch {}
}

// xmpp.js has no API for <fast invalidate='true'/>: wrap its FAST step and edit the inline
// elements it is about to put in <authenticate/> (outgoing middleware runs after the write).
function editFastRequest(xmpp, edit) {
  const auth = xmpp.fast.auth.bind(xmpp.fast);
  xmpp.fast.auth = (args) => auth({
    ...args,
    authenticate: (a) => {
      edit(a.streamFeatures);
      return args.authenticate(a);
    },
  });
}

function invalidate(xmpp) {
  editFastRequest(xmpp, (inline) => {
    for (const el of inline) if (el?.is?.("fast", FAST)) el.attrs.invalidate = "true";
  });
}

function requestToken(xmpp) {
  editFastRequest(xmpp, (inline) => {
    if (!inline.some((el) => el?.is?.("request-token", FAST))) {
      inline.push(xml("request-token", { xmlns: FAST, mechanism: "HT-SHA-256-NONE" }));
    }
  });
}

async function pingOk(c) {
  try {
    await c.xmpp.iqCaller.get(xml("ping", "urn:xmpp:ping")); // a result has no child
    return true;
  } catch {
    return false;
  }
}

// XEP-0313: the whole archive read backwards in pages of `pageSize` (RSM <before/>), as a
// client catching up does; returns what each page held and its <fin/>.
async function readArchive(c, pageSize) {
  const MAM = "urn:xmpp:mam:2";
  const pages = [];
  let before = "";
  for (let n = 0; n < 100; n++) {
    const queryid = `q${n}`;
    const got = [];
    const onStanza = (el) => {
      const result = el.is("message") && el.getChild("result", MAM);
      if (!result || result.attrs.queryid !== queryid) return;
      const msg = result.getChild("forwarded", "urn:xmpp:forward:0")?.getChild("message");
      got.push({ id: result.attrs.id, body: msg?.getChildText("body") ?? null,
                 from: msg?.attrs.from ?? null });
    };
    c.xmpp.on("stanza", onStanza);
    const set = xml("set", "http://jabber.org/protocol/rsm", xml("max", {}, String(pageSize)),
                    xml("before", {}, before));
    // request(), not set(): set() returns the answer's child named like the request's
    // (<query/>), and a MAM answer carries <fin/>
    const answer = await c.xmpp.iqCaller.request(
      xml("iq", { type: "set" }, xml("query", { xmlns: MAM, queryid }, set)));
    const fin = answer.getChild("fin", MAM);
    c.xmpp.off("stanza", onStanza);
    const finSet = fin.getChild("set", "http://jabber.org/protocol/rsm");
    pages.push({ items: got, complete: fin.attrs.complete === "true",
                 first: finSet?.getChildText("first") ?? null,
                 count: Number(finSet?.getChildText("count") ?? -1) });
    if (fin.attrs.complete === "true" || got.length === 0) break;
    before = finSet.getChildText("first");
  }
  return pages;
}

const scenarios = {
  // The account's archive, filled by another client, read by xmpp.js.
  async mam() {
    const c = await connect({ agentId: "c8f6a5e0-0000-4000-8000-000000000004" });
    const pages = await readArchive(c, 50);
    await stop(c);
    return { pages };
  },

  // Password over SASL2 + Bind 2 with a FAST token, then the token alone.
  async login() {
    const agentId = "c8f6a5e0-0000-4000-8000-000000000001";
    const first = await connect({ agentId });
    const firstJid = first.xmpp.jid.toString();
    const token = first.token();
    const firstExchange = authExchange(first.wire);
    await stop(first);

    const second = await connect({ token, withPassword: false, agentId });
    const exchange = authExchange(second.wire);
    const pinged = await pingOk(second);
    const secondJid = second.xmpp.jid.toString();
    await stop(second);
    return { firstJid, token, firstExchange, secondJid, exchange, pinged,
             failures: failures(second.wire) };
  },

  // Server configured to rotate at every login: the FAST login gets a new token; the old one
  // still works until the new one is used, then not any more.
  async rotation() {
    const agentId = "c8f6a5e0-0000-4000-8000-000000000002";
    const first = await connect({ agentId });
    const t1 = first.token();
    await stop(first);
    const second = await connect({ token: t1, withPassword: false, agentId });
    const t2 = second.token();
    const secondExchange = authExchange(second.wire);
    await stop(second);
    const third = await connect({ token: t2, withPassword: false, agentId });
    const t3 = third.token();
    await stop(third);
    // t1 is older than t2, which has been used: refused, and xmpp.js falls back to the password
    const fourth = await connect({ token: t1, withPassword: true, agentId });
    const fourthFailures = failures(fourth.wire);
    const fourthExchange = authExchange(fourth.wire);
    await stop(fourth);
    return { t1, t2, t3, secondExchange, fourthFailures, fourthExchange };
  },

  // <fast invalidate='true'/> without and with a new token; a revoked token is refused.
  async invalidation() {
    const agentId = "c8f6a5e0-0000-4000-8000-000000000003";
    const first = await connect({ agentId });
    const t1 = first.token();
    await stop(first);
    const inv = await connect({ token: t1, withPassword: false, agentId, tweak: invalidate });
    const invExchange = authExchange(inv.wire);
    await stop(inv);
    // The revoked token is refused; xmpp.js then falls back to the password (as XEP-0484 §4.1
    // asks), which we give it: without one it cannot log in at all.
    const revoked = await connect({ token: t1, withPassword: true, agentId });
    const revokedFailures = failures(revoked.wire);
    const revokedExchange = authExchange(revoked.wire);
    await stop(revoked);
    // new token, then invalidate it while asking for another one
    const again = await connect({ agentId });
    const t2 = again.token();
    await stop(again);
    const inv2 = await connect({ token: t2, withPassword: false, agentId,
                                 tweak: (x) => { requestToken(x); invalidate(x); } });
    const inv2Exchange = authExchange(inv2.wire);
    const t3 = inv2.token();
    await stop(inv2);
    const withT3 = await connect({ token: t3, withPassword: false, agentId });
    const t3Exchange = authExchange(withT3.wire);
    await stop(withT3);
    const withT2 = await connect({ token: t2, withPassword: true, agentId });
    const t2Failures = failures(withT2.wire);
    await stop(withT2);
    return { invExchange, revokedFailures, revokedExchange, inv2Exchange, t2: t2?.token,
             t3: t3?.token, t3Exchange, t2Failures };
  },
};

const timer = setTimeout(() => {
  console.log(JSON.stringify({ error: "timeout" }));
  process.exit(2);
}, 30000);
try {
  const result = await scenarios[scenario]();
  console.log(JSON.stringify(result));
  clearTimeout(timer);
  process.exit(0);
} catch (err) {
  console.log(JSON.stringify({ error: String(err?.stack ?? err) }));
  clearTimeout(timer);
  process.exit(1);
}
