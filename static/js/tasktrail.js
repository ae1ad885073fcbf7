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
