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

// The journal's first page follows the calls as they come in: its rows, fetched again with the same filters.
const journal = document.querySelector("table.journal[data-live] tbody");
function refreshJournal() {
  if (!journal || refreshJournal.timer) return;
  refreshJournal.timer = setTimeout(async () => {
    refreshJournal.timer = null;
    const playing = [...journal.querySelectorAll("audio")].some((audio) => !audio.paused);
    if (playing) return; // a recording someone listens to is not cut off; the next change refreshes
    const response = await fetch(location.href, { headers: { "X-Journal-Rows": "1" } });
    if (response.ok) journal.innerHTML = await response.text();
  }, 300);
}

function listen() {
  const source = new EventSource("/live/stream");
  const callOf = (event) => JSON.parse(event.data).call_id;
  source.addEventListener("CardShown", (event) => showCard(callOf(event)));
  source.addEventListener("CardHidden", (event) => hideCard(callOf(event)));
  source.addEventListener("CallEnded", (event) => hideCard(callOf(event)));
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
    return say(copy.textContent === "Copy" ? "Copied" : "Скопировано");
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
