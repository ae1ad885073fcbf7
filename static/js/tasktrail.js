// Copy buttons: <button data-copy="text">. Progressive: the id is also selectable text.
document.addEventListener("click", (event) => {
  const button = event.target.closest("[data-copy]");
  if (!button || !navigator.clipboard) return;
  navigator.clipboard.writeText(button.dataset.copy).then(() => {
    const label = button.textContent;
    button.textContent = "Copied";
    setTimeout(() => { button.textContent = label; }, 1200);
  });
});

// Live regions poll with hx-trigger="every Ns, tasktrail:visible from:body". A hidden tab does not
// poll (htmx would need eval for a [visible] trigger filter, which the CSP forbids), and a tab
// shown again refreshes at once instead of waiting for its next tick.
const polls = (element) => (element.getAttribute("hx-trigger") || "").includes("every ");
document.addEventListener("htmx:confirm", (event) => {
  if (document.visibilityState !== "visible" && polls(event.detail.elt)) event.preventDefault();
});
document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "visible") {
    document.body.dispatchEvent(new CustomEvent("tasktrail:visible"));
  }
});

// The browser's time zone, for the server to show times in when the user chose none.
(() => {
  const zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  // Zone names are cookie-safe as they are; the server reads the cookie without decoding it.
  if (!zone || !/^[A-Za-z0-9_+\-/]+$/.test(zone)) return;
  if (!document.cookie.split("; ").includes(`tasktrail_tz=${zone}`)) {
    document.cookie = `tasktrail_tz=${zone}; path=/; max-age=31536000; SameSite=Lax`;
  }
})();

// Relative times ("2m ago") beside <time datetime>: kept current, the same words the server writes.
const ago = (milliseconds) => {
  const future = milliseconds < 0;
  const seconds = Math.abs(milliseconds) / 1000;
  let text;
  if (seconds < 60) text = `${Math.round(seconds)}s`;
  else if (seconds < 3600) text = `${Math.floor(seconds / 60)}m`;
  else if (seconds < 86400) text = `${Math.floor(seconds / 3600)}h`;
  else text = `${Math.floor(seconds / 86400)}d`;
  return future ? `in ${text}` : `${text} ago`;
};
const refreshRelativeTimes = () => {
  const now = Date.now();
  for (const label of document.querySelectorAll("time[datetime] > .ago")) {
    const at = Date.parse(label.parentElement.getAttribute("datetime"));
    if (!Number.isNaN(at)) label.textContent = ago(now - at);
  }
};
setInterval(refreshRelativeTimes, 5000);

// The Tasks list's poll tells the server which version of each still-changing row it shows
// (<tr data-live>), so only rows that changed come back, swapped by id.
document.addEventListener("htmx:configRequest", (event) => {
  if (!event.detail.elt.matches("[data-live-poller]")) return;
  const seen = Array.from(document.querySelectorAll("#task-rows > tr[data-live]"))
    .slice(0, 200)
    .map((row) => `${row.id.replace("task-", "")}.${row.dataset.live}`);
  if (seen.length) event.detail.parameters.set("seen", seen.join(","));
});
