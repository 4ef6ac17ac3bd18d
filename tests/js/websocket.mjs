// xmpp.js (@xmpp/client) over WebSocket (RFC 7395) against Suricate's mod_websockets.
// Run by tests/web/test_websocket.py (node --experimental-websocket on Node 20):
//   node websocket.mjs <ws-url> <username> <password> <peer-jid>
// Logs in with the password (SASL2 + Bind 2, asking for a FAST token), sends a message to
// <peer-jid> and waits for its reply, then logs in again with the FAST token alone.
// Prints one JSON object on stdout.
import { client, xml } from "@xmpp/client";

const [service, username, password, peer] = process.argv.slice(2);
let lastWire = []; // the wire of the connection being made, shown when it fails

async function connect(token, withPassword) {
  let saved = token;
  const xmpp = client({ service, domain: "localhost", username, resource: "web",
                        password: withPassword ? password : undefined,
                        userAgent: xml("user-agent", { id: "c8f6a5e0-0000-4000-8000-0000000000ws" },
                                       xml("software", {}, "xmpp.js")) });
  xmpp.fast.saveToken = async (t) => { saved = t; };
  xmpp.fast.fetchToken = async () => saved;
  xmpp.fast.deleteToken = async () => { saved = null; };
  xmpp.reconnect.stop();
  const wire = [];
  lastWire = wire;
  xmpp.on("status", (status) => wire.push(["status", status]));
  xmpp.on("error", (err) => wire.push(["error", String(err)]));
  xmpp.on("send", (el) => wire.push(["out", el.toString()]));
  xmpp.on("element", (el) => wire.push(["in", el.toString()]));
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("not online after 10 s")), 10000);
    xmpp.once("online", () => { clearTimeout(timer); resolve(); });
    xmpp.on("error", (err) => { clearTimeout(timer); reject(err); });
    xmpp.start().catch((err) => { if (err?.name !== "TimeoutError") reject(err); });
  });
  return { xmpp, wire, token: () => saved };
}

function authenticate(wire) {
  return wire.find(([d, x]) => d === "out" && x.startsWith("<authenticate"))?.[1] ?? null;
}

async function main() {
  const first = await connect(null, true);
  const reply = new Promise((resolve) => {
    first.xmpp.on("stanza", (st) => {
      if (st.is("message") && st.getChildText("body")) resolve(st.getChildText("body"));
    });
  });
  await first.xmpp.send(xml("message", { to: peer, type: "chat" },
                            xml("body", {}, "hello from xmpp.js")));
  const body = await reply;
  const firstJid = first.xmpp.jid.toString();
  const firstAuth = authenticate(first.wire);
  await first.xmpp.stop();
  const token = first.token();
  const second = await connect(token, false);
  const secondAuth = authenticate(second.wire);
  const secondJid = second.xmpp.jid.toString();
  await second.xmpp.stop();
  return { firstJid, firstAuth, reply: body, token, secondAuth, secondJid };
}

const timer = setTimeout(() => {
  console.log(JSON.stringify({ error: "timeout" }));
  process.exit(1);
}, 30000);
main().then((result) => {
  clearTimeout(timer);
  console.log(JSON.stringify(result));
  process.exit(0);
}).catch((err) => {
  clearTimeout(timer);
  console.log(JSON.stringify({ error: String(err?.stack ?? err), wire: lastWire }));
  process.exit(1);
});
