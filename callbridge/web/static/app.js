// callbridge workspace: live call cards (Server-Sent Events), click-to-call, copy buttons.
"use strict";

const csrf = document.querySelector('meta[name="csrf"]').content;
const cards = document.getElementById("cards");
const toast = document.getElementById("toast");
const notice = document.getElementById("notice");
const words = document.body.dataset; // the page's words for what this script says
const me = words.user;

// A message in the user's words; the technical detail, if any, shows on a click.
function say(text, bad, detail) {
  toast.textContent = text;
  toast.className = (bad ? "show bad" : "show") + (detail ? " detailed" : "");
  toast.dataset.detail = detail || "";
  clearTimeout(say.timer);
  say.timer = setTimeout(() => (toast.className = ""), detail ? 10000 : 5000);
}

toast.addEventListener("click", () => {
  if (!toast.dataset.detail) return;
  const more = document.createElement("small");
  more.textContent = toast.dataset.detail;
  toast.append(document.createElement("br"), more);
  toast.dataset.detail = "";
});

// A state that lasts (the connection, the session, notifications) in a line under the header, with a link or a
// button when something can be done about it.
function tell(kind, text, bad, action) {
  notice.dataset.kind = kind;
  notice.replaceChildren(text, ...(action ? [action] : []));
  notice.className = bad ? "bad" : "";
  notice.hidden = false;
}
function untell(kind) {
  if (notice.dataset.kind === kind) notice.hidden = true;
}

const showing = new Set(); // cards being fetched; an answer or an end that comes meanwhile asks for them again
const changedMeanwhile = new Set();

async function showCard(callId) {
  if (cards.querySelector(`[data-call="${callId}"]`) || showing.has(String(callId))) return;
  showing.add(String(callId));
  try {
    await fetchCard(callId);
  } finally {
    showing.delete(String(callId));
  }
  if (changedMeanwhile.delete(String(callId))) refreshCard(callId);
}

async function fetchCard(callId) {
  const response = await fetch(`/cards/${callId}`);
  if (response.status !== 200) return;
  const holder = document.createElement("div");
  holder.innerHTML = await response.text();
  const card = holder.firstElementChild;
  if (!card || cards.querySelector(`[data-call="${callId}"]`)) return;
  withDraft(card);
  cards.prepend(card);
  if (card.classList.contains("ended")) setTimeout(() => leaveWhenIdle(card), ENDED_CARD_MS);
  if (!card.classList.contains("talking")) startRinging(String(callId), card);
}

function hideCard(callId) {
  if (showing.has(String(callId))) changedMeanwhile.add(String(callId)); // asked again once it is there
  stopRinging(String(callId));
  cards.querySelectorAll(`[data-call="${callId}"]`).forEach((card) => card.remove());
}

// ---- a call finds you: the tab's title and icon, a notification while the tab is hidden, a ring tone ----
const ringing = new Map(); // call id -> the notification shown for it, if any
const plainTitle = document.title;
const icon = document.querySelector('link[rel="icon"]');
const soundKey = `callbridge.sound.${me}`;
const soundButton = document.querySelector("header .sound");

function startRinging(callId, card) {
  if (ringing.has(callId)) return;
  ringing.set(callId, null);
  const who = card.querySelector("h3")?.textContent.trim() || "";
  document.title = `☎ ${who} · ${plainTitle}`;
  icon.href = "/static/ringing.svg";
  if (document.hidden) notify(callId, card);
  if (localStorage.getItem(soundKey) !== "off") tone.start();
}

function notify(callId, card) {
  if (!("Notification" in window) || Notification.permission !== "granted" || ringing.get(callId)) return;
  const who = card.querySelector("h3")?.textContent.trim() || "";
  const line = card.querySelector("header")?.textContent.trim() || "";
  const shown = new Notification(`${words.ringing}: ${who}`, { body: line, tag: `call-${callId}`,
                                                              icon: "/static/ringing.svg", requireInteraction: true });
  shown.onclick = () => {
    window.focus();
    card.scrollIntoView({ block: "nearest" });
    shown.close();
  };
  ringing.set(callId, shown);
}

function stopRinging(callId) {
  if (!ringing.has(callId)) return;
  ringing.get(callId)?.close();
  ringing.delete(callId);
  if (ringing.size) return;
  document.title = plainTitle;
  icon.href = "/static/icon.svg";
  tone.stop();
}

document.addEventListener("visibilitychange", () => {
  if (!document.hidden) return;
  for (const callId of ringing.keys()) {
    const card = cards.querySelector(`[data-call="${callId}"]`);
    if (card) notify(callId, card);
  }
});

// The ring tone is made here (two tones, ring-ring, every three seconds): nothing to download.
const tone = {
  context: null,
  timer: null,
  start() {
    if (this.timer) return;
    this.context = this.context || new AudioContext();
    this.context.resume().catch(() => {});
    const ring = () => {
      for (const at of [0, 0.6]) {
        const gain = this.context.createGain();
        gain.gain.value = 0.08;
        gain.connect(this.context.destination);
        for (const pitch of [440, 480]) {
          const wave = this.context.createOscillator();
          wave.frequency.value = pitch;
          wave.connect(gain);
          wave.start(this.context.currentTime + at);
          wave.stop(this.context.currentTime + at + 0.4);
        }
      }
    };
    ring();
    this.timer = setInterval(ring, 3000);
    soundButton?.classList.add("ringing");
  },
  stop() {
    clearInterval(this.timer);
    this.timer = null;
    soundButton?.classList.remove("ringing");
  },
};

function showSound() {
  const on = localStorage.getItem(soundKey) !== "off";
  soundButton.textContent = on ? words.soundOn : words.soundOff;
  soundButton.setAttribute("aria-pressed", String(on));
}
soundButton?.addEventListener("click", () => {
  const on = localStorage.getItem(soundKey) === "off";
  localStorage.setItem(soundKey, on ? "on" : "off");
  if (!on) tone.stop();
  else if (ringing.size) tone.start();
  showSound();
});
if (soundButton) showSound();

// Notifications are asked for once, saying why; a refusal is said plainly.
function askToNotify() {
  if (!("Notification" in window)) return;
  if (Notification.permission === "default") {
    const allow = document.createElement("button");
    allow.textContent = words.notifyAllow;
    allow.addEventListener("click", async () => {
      await Notification.requestPermission();
      untell("notifications");
      askToNotify();
    });
    tell("notifications", words.notifyAsk, false, allow);
  } else if (Notification.permission === "denied" && !sessionStorage.getItem("callbridge.denied-said")) {
    sessionStorage.setItem("callbridge.denied-said", "1");
    tell("notifications", words.notifyDenied, true);
  }
}
askToNotify();

// ---- the card stays with the call: the comment typed so far is kept in this browser (every tab sees it) ----
const draftKey = (callId) => `callbridge.comment.${me}.${callId}`;
function withDraft(card) {
  const textarea = card.querySelector("textarea");
  const draft = localStorage.getItem(draftKey(card.dataset.call));
  if (textarea && draft !== null) textarea.value = draft;
}
document.addEventListener("input", (event) => {
  const textarea = event.target.closest(".card textarea");
  if (textarea) localStorage.setItem(draftKey(textarea.closest(".card").dataset.call), textarea.value);
});
window.addEventListener("storage", (event) => {
  if (!event.key?.startsWith(`callbridge.comment.${me}.`) || event.newValue === null) return;
  const textarea = cards.querySelector(`[data-call="${event.key.split(".").pop()}"] textarea`);
  if (textarea && document.activeElement !== textarea) textarea.value = event.newValue;
});

// A page opened, reloaded or navigated to shows again the cards that are this employee's now.
async function restoreCards() {
  const response = await fetch("/cards");
  if (!response.ok) return;
  for (const callId of (await response.json()).calls.reverse()) await showCard(callId);
}

// After an answer or the end, a card on screen is asked for again: the employee who talks gets it back with a
// timer and a comment (and, once the call is over, a while to finish the comment); anyone else gets 204.
async function refreshCard(callId) {
  const shown = cards.querySelector(`[data-call="${callId}"]`);
  if (!shown && showing.has(String(callId))) changedMeanwhile.add(String(callId));
  if (!shown) return;
  const response = await fetch(`/cards/${callId}`);
  if (response.status !== 200) return hideCard(callId);
  const holder = document.createElement("div");
  holder.innerHTML = await response.text();
  const card = holder.firstElementChild;
  const typed = shown.querySelector("textarea")?.value;
  withDraft(card);
  if (typed !== undefined && card.querySelector("textarea")) card.querySelector("textarea").value = typed;
  shown.replaceWith(card);
  if (card.classList.contains("talking")) stopRinging(String(callId));
  if (card.classList.contains("ended")) setTimeout(() => leaveWhenIdle(card), ENDED_CARD_MS);
}

const ENDED_CARD_MS = 120000; // an ended call's card stays this long, and longer while its comment is being written
function leaveWhenIdle(card) {
  const textarea = card.querySelector("textarea");
  if (textarea && (document.activeElement === textarea || textarea.value !== textarea.defaultValue)) {
    return setTimeout(() => leaveWhenIdle(card), ENDED_CARD_MS);
  }
  card.remove();
}

setInterval(() => {
  for (const timer of document.querySelectorAll("time.timer")) {
    const seconds = Math.max(0, Math.floor((Date.now() - Date.parse(timer.dataset.since)) / 1000));
    timer.textContent = `${Math.floor(seconds / 60)}:${String(seconds % 60).padStart(2, "0")}`;
  }
}, 1000);

// A form that changes what others rely on (a PBX's token, say) asks first, in the words the page gives it.
document.addEventListener("submit", (event) => {
  const form = event.target.closest("form[data-confirm]");
  if (form && !window.confirm(form.dataset.confirm)) event.preventDefault();
}, true);

// "Создать клиента" on a card: made in place, the card shows the client; if the rules made one for the number
// meanwhile, the card shows that one (and what was typed stays in the field).
document.addEventListener("submit", async (event) => {
  const form = event.target.closest(".card form.new-client");
  if (!form) return;
  event.preventDefault();
  const response = await fetch(form.action, { method: "POST", body: new FormData(form),
                                              headers: { "X-Requested-With": "fetch" } });
  const answer = await response.json().catch(() => ({}));
  if (response.status === 409 && answer.client) say(form.dataset.taken);
  if (response.ok || answer.client) refreshCard(form.closest(".card").dataset.call);
});

document.addEventListener("submit", async (event) => {
  const form = event.target.closest("form.comment");
  if (!form) return;
  event.preventDefault();
  const response = await fetch(form.action, { method: "POST", body: new FormData(form),
                                              headers: { "X-Requested-With": "fetch" } });
  const textarea = form.querySelector("textarea");
  if (response.ok) {
    textarea.defaultValue = textarea.value;
    localStorage.removeItem(draftKey(form.closest(".card")?.dataset.call || ""));
  }
  say(response.ok ? form.dataset.saved : form.dataset.failed, !response.ok);
});

// "Отошёл": no card comes while away; back, the stream opens again and cards come.
const awayButton = document.querySelector("header .away");
awayButton?.addEventListener("click", async () => {
  const away = awayButton.dataset.away === "1" ? "0" : "1";
  const response = await fetch("/me/away", { method: "POST", body: new URLSearchParams({ csrf, away }) });
  if (!response.ok) return;
  awayButton.dataset.away = away;
  awayButton.textContent = away === "1" ? words.backHere : words.stepAway;
  if (away === "1") for (const card of cards.querySelectorAll(".card:not(.talking)")) hideCard(card.dataset.call);
  reconnect();
});

// The journal's first page follows the calls as they come in: the page fetched again with the same filters, and
// its rows, its count and its pager put in place (the filters someone may be typing into are left alone).
const journal = document.querySelector("table[data-live] tbody"); // the journal's first page, who is on the line
const FOLLOWED = ["table[data-live] tbody", "h1 small", "p.pages"];
function refreshJournal() {
  if (!journal || refreshJournal.timer) return;
  refreshJournal.timer = setTimeout(async () => {
    refreshJournal.timer = null;
    const playing = [...journal.querySelectorAll("audio")].some((audio) => !audio.paused);
    if (playing) return; // a recording someone listens to is not cut off; the next change refreshes
    const response = await fetch(location.href);
    if (!response.ok) return;
    const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
    for (const selector of FOLLOWED) {
      const [here, there] = [document.querySelector(selector), fresh.querySelector(selector)];
      if (here && there) here.replaceChildren(...there.childNodes);
    }
  }, 300);
}

let stream = null;
function reconnect() {
  stream?.close();
  listen();
}

function listen() {
  const source = (stream = new EventSource("/live/stream"));
  const callOf = (event) => JSON.parse(event.data).call_id;
  source.addEventListener("CardShown", (event) => showCard(callOf(event)));
  source.addEventListener("CardHidden", (event) => {
    const message = JSON.parse(event.data);
    if (message.leg_state === "answered") refreshCard(message.call_id); // answered here: the card stays
    else hideCard(message.call_id);
  });
  source.addEventListener("CallAnswered", (event) => refreshCard(callOf(event)));
  source.addEventListener("CallEnded", (event) => refreshCard(callOf(event)));
  const changes = ["CallOpened", "CallAnswered", "CallEnded", ...(journal?.closest(".presence") ? ["CardShown", "CardHidden"] : [])];
  for (const change of changes) source.addEventListener(change, refreshJournal);
  for (const change of ["CallAnswered", "CallEnded"]) source.addEventListener(change, countOwed);
  source.onopen = () => untell("connection");
  source.onerror = async () => {
    source.close();
    // the session may have ended (a logout elsewhere, a new password): then signing in again, not reconnecting
    const check = await fetch("/cards", { redirect: "manual" }).catch(() => null);
    if (check && (check.type === "opaqueredirect" || check.status === 401)) return sessionEnded();
    if (!check || !check.ok) tell("connection", words.connectionLost, true);
    setTimeout(listen, check && check.ok ? 500 : 2000);
  };
}

function sessionEnded() {
  const again = document.createElement("a");
  again.href = `/login?next=${encodeURIComponent(location.pathname + location.search)}`;
  again.textContent = words.signInAgain;
  tell("session", words.sessionEnded, true, again);
  for (const callId of [...ringing.keys()]) stopRinging(callId);
}

// The header says how many of my missed calls are owed a call, and asks again as calls end or are answered.
const owedCount = document.querySelector("header .owed-count");
function countOwed() {
  if (!owedCount || countOwed.timer) return;
  countOwed.timer = setTimeout(async () => {
    countOwed.timer = null;
    const response = await fetch("/missed/count").catch(() => null);
    if (!response || !response.ok) return;
    const { owed } = await response.json();
    owedCount.textContent = owed;
    owedCount.hidden = !owed;
  }, 500);
}

listen();
restoreCards();
countOwed();

document.addEventListener("click", async (event) => {
  const play = event.target.closest("button.play");
  if (play) { // the player is made when wanted: a journal of fifty rows is not fifty players
    const audio = Object.assign(document.createElement("audio"), { controls: true, src: play.dataset.src });
    play.replaceWith(audio);
    return audio.play().catch(() => {});
  }
  const dismiss = event.target.closest(".card .dismiss");
  if (dismiss) return dismiss.closest(".card").remove();
  const copy = event.target.closest("button.copy");
  if (copy) {
    await navigator.clipboard?.writeText(copy.dataset.copy).catch(() => {});
    return say(document.body.dataset.copied);
  }
  const dial = event.target.closest("a.dial");
  if (!dial) return;
  event.preventDefault();
  const response = await fetch("/dial", {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
    body: JSON.stringify({ phone: dial.dataset.phone }),
  });
  const answer = await response.json();
  say(answer.message ? `${answer.message} ${answer.phone}` : answer.error, !response.ok, answer.detail);
  if (answer.request) followDial(answer.request, answer.phone);
});

// A click-to-call the PBX did not take at once is followed until it is placed or given up, from whichever page
// the employee is on by then: a refusal is said to who clicked, not only to admins.
const DIALS = "callbridge.dials";
const pendingDials = () => JSON.parse(sessionStorage.getItem(DIALS) || "{}");
function followDial(requestId, phone) {
  sessionStorage.setItem(DIALS, JSON.stringify({ ...pendingDials(), [requestId]: phone }));
  setTimeout(() => checkDial(requestId), 3000);
}
async function checkDial(requestId) {
  const phone = pendingDials()[requestId];
  if (phone === undefined) return;
  const response = await fetch(`/dial/${requestId}`).catch(() => null);
  const answer = response && response.ok ? await response.json() : { status: response ? "gone" : "pending" };
  if (answer.status === "pending") return setTimeout(() => checkDial(requestId), 3000);
  const rest = pendingDials();
  delete rest[requestId];
  sessionStorage.setItem(DIALS, JSON.stringify(rest));
  if (answer.status === "done") say(`${answer.message} ${phone}`);
  else if (answer.status === "failed") say(`${answer.error} ${phone}`, true, answer.detail);
}
for (const requestId of Object.keys(pendingDials())) checkDial(requestId);
