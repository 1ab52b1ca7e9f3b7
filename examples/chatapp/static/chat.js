// The chat page: one sente connection carries the room, private messages and
// the list of users online. See events.go for the events.
import { connect } from "/chsk/client.js";

const $ = (id) => document.getElementById(id);
const meta = (name) => document.querySelector(`meta[name="${name}"]`).content;
const me = meta("chat-user");

// ?transport=ajax skips WebSocket; otherwise "auto" tries WebSocket and falls
// back to Ajax long-polling when it cannot open.
const forceAjax = new URLSearchParams(location.search).get("transport") === "ajax";
const chsk = connect("/chsk", { csrfToken: meta("csrf-token"), type: forceAjax ? "ajax" : "auto" });
window.chsk = chsk; // to play with from the console: await chsk.request("chat/users?")

// ---- connection panel ----

let opens = 0;
chsk.onState((s, prev) => {
  if (s.open && !prev.open) {
    opens++;
    refreshUsers(); // after a reconnect the list may have changed
  }
  renderState(s);
});
renderState(chsk.state);

function renderState(s) {
  const state = s.open ? "open" : s.stopped ? "stopped" : s.everOpened ? "reconnecting" : "connecting";
  const conn = $("conn");
  Object.assign(conn.dataset, { state, transport: s.transport ?? "", opens });
  $("conn-state").textContent = s.attempt > 1 ? `${state} (attempt ${s.attempt})` : state;
  $("conn-transport").textContent = s.transport ?? "–";
  $("conn-opens").textContent = opens;
  $("conn-close").textContent = s.lastClose ? `${s.lastClose.code} ${s.lastClose.reason}`.trim() : "–";
}

$("force-ajax").checked = forceAjax;
$("force-ajax").addEventListener("change", (e) => {
  const url = new URL(location.href);
  if (e.target.checked) url.searchParams.set("transport", "ajax");
  else url.searchParams.delete("transport");
  location.assign(url);
});

// ---- users online ----

async function refreshUsers() {
  try {
    renderUsers(await chsk.request("chat/users?", undefined, { timeoutMs: 5000 }));
  } catch (err) {
    console.warn("chat: users", err);
  }
}

chsk.on("chat/users", renderUsers);

function renderUsers(users) {
  if (!Array.isArray(users)) return;
  const list = $("users");
  list.replaceChildren(
    ...users.map((u) => {
      const li = document.createElement("li");
      li.dataset.user = u;
      li.textContent = u === me ? `${u} (you)` : u;
      li.addEventListener("click", () => {
        $("to").value = u;
        $("text").focus();
      });
      return li;
    }),
  );
  // The recipient choices follow the list; keep the current one if still there.
  const to = $("to");
  const current = to.value;
  to.replaceChildren(new Option("everyone", ""), ...users.map((u) => new Option(`only ${u}`, u)));
  to.value = users.includes(current) ? current : "";
}

// ---- messages ----

chsk.on("chat/msg", (m) => addMessage(m, "room"));
chsk.on("chat/private", (m) => addMessage(m, "private"));

function addMessage(m, kind) {
  const li = document.createElement("li");
  li.className = kind;
  li.dataset.from = m.from;
  const time = document.createElement("time");
  time.textContent = new Date(m.at).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  const who = document.createElement("b");
  who.textContent = kind === "private" ? `${m.from} → ${m.to}` : m.from;
  const text = document.createElement("span");
  text.textContent = m.text; // textContent: never HTML from other users
  li.append(time, who, text);
  $("messages").append(li);
  li.scrollIntoView({ block: "end" });
}

// Sending asks for a reply, so the page knows the server took the message.
$("compose").addEventListener("submit", async (e) => {
  e.preventDefault();
  const text = $("text").value.trim();
  const to = $("to").value;
  if (!text) return;
  setStatus("pending", "sending…");
  try {
    const reply = to
      ? await chsk.request("chat/private", { to, text })
      : await chsk.request("chat/say", { text });
    if (reply?.ok) {
      $("text").value = "";
      setStatus("ok", "sent ✓");
    } else {
      setStatus("error", reply?.error ?? "refused");
    }
  } catch (err) {
    setStatus("error", `not sent: ${err.code ?? err}`); // closed, timeout or error
  }
});

function setStatus(result, text) {
  $("status").dataset.result = result;
  $("status").textContent = text;
}
