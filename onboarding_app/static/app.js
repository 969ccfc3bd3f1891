// Accrue concierge: progressive enhancement only. Every page works without this file.
(function () {
  "use strict";

  const csrfToken = () => document.querySelector('meta[name="csrf-token"]')?.content || "";

  // Every fetch that changes something carries the CSRF token (Flask-WTF checks X-CSRFToken).
  function post(url, body) {
    return fetch(url, {
      method: "POST", body, credentials: "same-origin",
      headers: { "X-CSRFToken": csrfToken(), Accept: "application/json" },
    });
  }

  // --- U1: the concierge pop-up ------------------------------------------------------
  document.querySelectorAll("dialog[data-autoshow]").forEach((dialog) => {
    if (typeof dialog.showModal === "function") {
      if (dialog.open) dialog.close();
      dialog.showModal();
      dialog.querySelector("[autofocus], .btn-primary")?.focus();
    }
  });

  // --- U6: unsaved changes -----------------------------------------------------------
  const guarded = document.querySelector("form[data-guard]");
  let dirty = false;
  const leaveDialog = document.getElementById("leave-dialog");
  let pendingLeave = null;

  if (guarded) {
    const markDirty = (event) => {
      if (event.target.closest("[data-no-guard]")) return;
      dirty = true;
    };
    guarded.addEventListener("input", markDirty);
    guarded.addEventListener("change", markDirty);
    guarded.addEventListener("submit", () => { dirty = false; });

    window.addEventListener("beforeunload", (event) => {
      if (!dirty) return;
      event.preventDefault();
      event.returnValue = ""; // older browsers need a value to show the prompt
    });

    // In-app navigation: our own dialog, which can also save before leaving.
    document.addEventListener("click", (event) => {
      const link = event.target.closest("a[href]");
      if (!dirty || !link || link.target === "_blank" || event.defaultPrevented) return;
      if (event.metaKey || event.ctrlKey || event.shiftKey || event.button !== 0) return;
      const url = new URL(link.href, location.href);
      if (url.origin !== location.origin || (url.pathname === location.pathname && url.hash)) return;
      event.preventDefault();
      askBeforeLeaving(() => { location.href = url.href; }, url.pathname + url.search);
    });
    document.querySelectorAll("form:not([data-guard])").forEach((other) => {
      other.addEventListener("submit", (event) => {
        if (!dirty || other.dataset.confirmed) return;
        event.preventDefault();
        askBeforeLeaving(() => { other.dataset.confirmed = "1"; dirty = false; other.submit(); }, null);
      });
    });
  }

  function askBeforeLeaving(leave, nextUrl) {
    if (!leaveDialog || typeof leaveDialog.showModal !== "function") {
      if (window.confirm("You have unsaved changes. Leave without saving?")) { dirty = false; leave(); }
      return;
    }
    pendingLeave = { leave, nextUrl };
    const save = leaveDialog.querySelector("[data-leave-save]");
    if (save) save.hidden = nextUrl === null;
    leaveDialog.showModal();
  }

  if (leaveDialog) {
    leaveDialog.addEventListener("click", (event) => {
      const button = event.target.closest("button");
      if (!button || !pendingLeave) return;
      if (button.hasAttribute("data-leave-discard")) {
        dirty = false; leaveDialog.close(); pendingLeave.leave();
      } else if (button.hasAttribute("data-leave-save") && guarded) {
        const next = guarded.querySelector('input[name="next_url"]');
        if (next) next.value = pendingLeave.nextUrl || "";
        leaveDialog.close();
        const saveButton = guarded.querySelector('button[name="action"][value="save"]');
        dirty = false;
        if (saveButton && guarded.requestSubmit) guarded.requestSubmit(saveButton); else guarded.submit();
      } else {
        leaveDialog.close();
      }
    });
  }

  // --- Provide Details: show the panel of the chosen sign-in method --------------------
  const methodRadios = document.querySelectorAll('input[name="auth_method"]');
  function showMethod() {
    const chosen = (document.querySelector('input[name="auth_method"]:checked') ||
                    document.querySelector('input[type="hidden"][name="auth_method"]'))?.value;
    document.querySelectorAll("[data-method-panel]").forEach((panel) => {
      panel.hidden = panel.dataset.methodPanel !== chosen;
    });
  }
  methodRadios.forEach((radio) => radio.addEventListener("change", showMethod));
  if (methodRadios.length) showMethod();

  // --- Test connection inline (the server tests the stored secret) ----------------------
  document.querySelectorAll('button[name="action"][value="test"]').forEach((button) => {
    button.addEventListener("click", async (event) => {
      const form = button.form;
      const box = document.getElementById("test-result");
      if (!form || !box) return;
      event.preventDefault();
      const data = new FormData(form);
      data.set("action", "test");
      button.disabled = true;
      box.className = "result busy";
      box.textContent = "Testing the connection…";
      form.querySelectorAll('[aria-invalid][data-blamed]').forEach((el) => {
        el.removeAttribute("aria-invalid");
        el.removeAttribute("data-blamed");
        el.closest(".field")?.classList.remove("has-error");
      });
      try {
        // form.action would be the button named "action": read the attribute instead.
        const response = await post(form.getAttribute("action") || location.pathname, data);
        const body = await response.json();
        form.querySelectorAll('input[type="password"]').forEach((input) => {
          if (input.value) {
            input.value = "";
            input.placeholder = "Saved: leave blank to keep";
          }
        });
        dirty = false;
        if (body.ok) {
          box.className = "result ok";
          box.textContent = "✓ " + body.message;
        } else {
          // Said once, in the result box; the field to blame (when the CRM says) points to it.
          box.className = "result bad";
          box.textContent = (body.message || "The connection failed.") + (body.hint ? " " + body.hint : "");
          const field = body.field && form.querySelector('[name="' + body.field + '"]');
          if (field) {
            field.setAttribute("aria-invalid", "true");
            field.setAttribute("data-blamed", "");
            field.closest(".field")?.classList.add("has-error");
            const described = (field.getAttribute("aria-describedby") || "").split(" ");
            if (!described.includes(box.id)) {
              field.setAttribute("aria-describedby", described.concat(box.id).join(" ").trim());
            }
            field.focus();
          } else {
            box.focus();
          }
        }
      } catch (error) {
        box.className = "result bad";
        box.textContent = "The test could not run. Check your network and try again.";
      } finally {
        button.disabled = false;
      }
    });
  });

  // --- Status page: refresh the numbers every few seconds ------------------------------
  const status = document.querySelector("[data-status-url]");
  if (status) {
    const refresh = async () => {
      try {
        const response = await fetch(status.dataset.statusUrl, { headers: { Accept: "application/json" } });
        if (!response.ok) return;
        const report = await response.json();
        report.objects.forEach((object) => {
          const row = status.querySelector('[data-object="' + object.name + '"]');
          if (!row) return;
          const bar = row.querySelector("progress");
          if (object.percent === null) {
            bar.removeAttribute("value"); // indeterminate: a count with no known total
          } else {
            bar.max = 100;
            bar.value = object.percent;
          }
          row.querySelector("[data-synced]").textContent = object.synced.toLocaleString("en-US");
          const state = row.querySelector("[data-state]");
          state.textContent = object.state_label;
          state.className = "state state-" + object.state;
          const detail = row.querySelector("[data-detail]");
          detail.textContent = object.detail || "";
          detail.hidden = !object.detail;
        });
        const recs = document.querySelector("[data-recs-message]");
        if (recs) recs.textContent = report.recommendations.message;
        const ready = document.getElementById("first-data");
        const recsBox = document.getElementById("first-recommendations");
        const recsReady = report.recommendations.state === "ready";
        if ((ready && report.first_data_ready && !ready.classList.contains("ready")) ||
            (recsBox && recsReady !== recsBox.classList.contains("ready"))) {
          location.reload(); // a milestone changed: the page's own wording follows
        }
      } catch (error) { /* offline for a moment: try again next tick */ }
    };
    setInterval(refresh, 5000);
  }
})();
