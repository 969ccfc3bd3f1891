// Push API pages: copy buttons, and the "waiting for your first push" indicator.
// Progressive enhancement only: without it the page still shows everything (reload to
// see whether a push arrived).
(function () {
  "use strict";

  document.querySelectorAll("button[data-copy]").forEach((button) => {
    button.addEventListener("click", async () => {
      const source = document.getElementById(button.dataset.copy);
      if (!source) return;
      try {
        await navigator.clipboard.writeText(source.innerText);
        button.textContent = "Copied";
      } catch (_) {
        // No clipboard (plain http, an old browser): select the text for Ctrl+C.
        const range = document.createRange();
        range.selectNodeContents(source);
        const selection = window.getSelection();
        selection.removeAllRanges();
        selection.addRange(range);
        button.textContent = "Press Ctrl+C";
      }
      setTimeout(() => { button.textContent = "Copy"; }, 2500);
    });
  });

  const indicator = document.getElementById("push-indicator");
  if (!indicator || !indicator.dataset.poll || indicator.classList.contains("ok")) return;
  const poll = async () => {
    try {
      const answer = await fetch(indicator.dataset.poll, {
        credentials: "same-origin", headers: { Accept: "application/json" },
      });
      if (answer.ok) {
        const status = await answer.json();
        if (status.received) {
          indicator.classList.remove("busy");
          indicator.classList.add("ok");
          indicator.textContent = `✓ Your first push arrived: ${status.records.toLocaleString()} ` +
            `record(s) in ${status.batches.toLocaleString()} batch(es). You are connected.`;
          return;
        }
      }
    } catch (_) { /* offline for a moment: try again */ }
    setTimeout(poll, 3000);
  };
  setTimeout(poll, 3000);
})();
