// callbridge workspace: live call cards (Server-Sent Events), click-to-call, copy buttons.
"use strict";

const csrf = document.querySelector('meta[name="csrf"]').content;
const cards = document.getElementById("cards");
const toast = document.getElementById("toast");

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

async function showCard(callId) {
  if (cards.querySelector(`[data-call="${callId}"]`)) return;
  const response = await fetch(`/cards/${callId}`);
  if (!response.ok) return;
  const holder = document.createElement("div");
  holder.innerHTML = await response.text();
  const card = holder.firstElementChild;
  if (card && !cards.querySelector(`[data-call="${callId}"]`)) cards.prepend(card);
}

function hideCard(callId) {
  cards.querySelectorAll(`[data-call="${callId}"]`).forEach((card) => card.remove());
}

// After an answer or the end, a card on screen is asked for again: the employee who talks gets it back with a
// timer and a comment (and, once the call is over, a while to finish the comment); anyone else gets 204.
async function refreshCard(callId) {
  const shown = cards.querySelector(`[data-call="${callId}"]`);
  if (!shown) return;
  const response = await fetch(`/cards/${callId}`);
  if (response.status !== 200) return hideCard(callId);
  const holder = document.createElement("div");
  holder.innerHTML = await response.text();
  const card = holder.firstElementChild;
  const typed = shown.querySelector("textarea")?.value;
  if (typed !== undefined && card.querySelector("textarea")) card.querySelector("textarea").value = typed;
  shown.replaceWith(card);
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

document.addEventListener("submit", async (event) => {
  const form = event.target.closest("form.comment");
  if (!form) return;
  event.preventDefault();
  const response = await fetch(form.action, { method: "POST", body: new FormData(form),
                                              headers: { "X-Requested-With": "fetch" } });
  const textarea = form.querySelector("textarea");
  if (response.ok) textarea.defaultValue = textarea.value;
  say(response.ok ? form.dataset.saved : form.dataset.failed, !response.ok);
});

// The journal's first page follows the calls as they come in: the page fetched again with the same filters, and
// its rows, its count and its pager put in place (the filters someone may be typing into are left alone).
const journal = document.querySelector("table.journal[data-live] tbody");
const FOLLOWED = ["table.journal tbody", "h1 small", "p.pages"];
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

function listen() {
  const source = new EventSource("/live/stream");
  const callOf = (event) => JSON.parse(event.data).call_id;
  source.addEventListener("CardShown", (event) => showCard(callOf(event)));
  source.addEventListener("CardHidden", (event) => {
    const message = JSON.parse(event.data);
    if (message.leg_state === "answered") refreshCard(message.call_id); // answered here: the card stays
    else hideCard(message.call_id);
  });
  source.addEventListener("CallAnswered", (event) => refreshCard(callOf(event)));
  source.addEventListener("CallEnded", (event) => refreshCard(callOf(event)));
  for (const change of ["CallOpened", "CallAnswered", "CallEnded"]) source.addEventListener(change, refreshJournal);
  source.onerror = () => {
    source.close();
    setTimeout(listen, 2000);
  };
}
listen();

document.addEventListener("click", async (event) => {
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
});
