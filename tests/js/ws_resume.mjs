// xmpp.js (@xmpp/client) over WebSocket: its socket dies, it reconnects and resumes the
// session (XEP-0198 inline in SASL2, RFC 7395 §3.6). Run by tests/web/test_websocket.py:
//   node ws_resume.mjs <ws-url> <username> <password>
// Prints {"online": jid} when the session is up (the test then drops the socket and sends a
// message), then one JSON object with what happened.
import { client, xml } from "@xmpp/client";

const [service, username, password] = process.argv.slice(2);
const xmpp = client({ service, domain: "localhost", username, password, resource: "web" });
const wire = [];
const bodies = [];
let resumed = 0;
let onlines = 0;
xmpp.on("send", (el) => wire.push(["out", el.toString()]));
xmpp.on("element", (el) => wire.push(["in", el.toString()]));
xmpp.on("status", (status) => wire.push(["status", status]));
xmpp.on("error", (err) => wire.push(["error", String(err)]));
xmpp.streamManagement.on("resumed", () => { resumed += 1; });
xmpp.reconnect.delay = 200;

const done = new Promise((resolve) => {
  xmpp.on("stanza", (st) => {
    if (st.is("message") && st.getChildText("body")) {
      bodies.push(st.getChildText("body"));
      if (st.getChildText("body") === "while you were away") resolve();
    }
  });
});
xmpp.on("online", (jid) => {
  onlines += 1;
  if (onlines === 1) console.log(JSON.stringify({ online: jid.toString() }));
});

const timer = setTimeout(() => {
  console.log(JSON.stringify({ error: "timeout", wire }));
  process.exit(1);
}, 20000);
try {
  await xmpp.start();
  await done;
  const jid = xmpp.jid.toString();
  const authenticates = wire.filter(([d, x]) => d === "out" && x.startsWith("<authenticate"))
    .map(([, x]) => x);
  xmpp.reconnect.stop();
  await xmpp.stop();
  clearTimeout(timer);
  console.log(JSON.stringify({ jid, resumed, onlines, bodies, authenticates }));
  process.exit(0);
} catch (err) {
  clearTimeout(timer);
  console.log(JSON.stringify({ error: String(err?.stack ?? err), wire }));
  process.exit(1);
}
