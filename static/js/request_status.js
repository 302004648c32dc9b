// Follows a request while it waits or runs: polls its status.json and updates the status,
// the execution times and each target's row in place. When a pending request is decided,
// or a running one finishes, the page reloads once, to show the timeline and what the new
// state allows (such as ending a shell).
(function () {
  "use strict";

  const INTERVAL_MS = 2000;
  // A request waiting for a decision changes seldom: ask less often.
  const PENDING_INTERVAL_MS = 5000;
  const section = document.getElementById("request-follow");
  if (!section) {
    return;
  }
  const pending = section.dataset.status === "pending";
  if (!pending && section.dataset.running !== "true") {
    return;
  }
  const url = section.dataset.statusUrl;

  function badge(container, status, icon, label) {
    if (!container) {
      return;
    }
    const outer = document.createElement("span");
    outer.className = "status status-" + status;
    const mark = document.createElement("span");
    mark.setAttribute("aria-hidden", "true");
    mark.textContent = icon;
    outer.append(mark, " " + label);
    container.replaceChildren(outer);
  }

  function field(name) {
    return document.querySelector('#execution [data-field="' + name + '"]');
  }

  function moment(name, value) {
    const cell = field(name);
    if (!cell) {
      return;
    }
    if (!value) {
      cell.textContent = "—";
      return;
    }
    const time = document.createElement("time");
    time.dateTime = value.iso;
    time.textContent = value.text;
    cell.replaceChildren(time);
  }

  function update(data) {
    badge(document.getElementById("request-status"), data.status, data.status_icon, data.status_label);
    moment("queued_at", data.queued_at);
    moment("started_at", data.started_at);
    moment("finished_at", data.finished_at);
    const attempts = field("execution_attempts");
    if (attempts) {
      attempts.textContent = String(data.execution_attempts);
    }
    for (const target of data.targets) {
      const row = document.querySelector('tr[data-position="' + target.position + '"]');
      if (!row) {
        continue;
      }
      badge(row.querySelector('[data-field="status"]'), target.status, target.status_icon, target.status_label);
      const message = row.querySelector('[data-field="message"]');
      if (message) {
        message.textContent = target.message;
      }
    }
  }

  async function poll() {
    if (!document.hidden) {
      let response;
      try {
        response = await fetch(url, {
          headers: { Accept: "application/json" },
          credentials: "same-origin",
          cache: "no-store",
        });
      } catch (error) {
        // The network is down for a moment: try again at the next tick.
        response = null;
      }
      if (response) {
        const json = (response.headers.get("Content-Type") || "").startsWith("application/json");
        if (!response.ok || !json) {
          // Signed out, or no longer allowed to see it: stop following.
          return;
        }
        const data = await response.json();
        if (data.status === "pending") {
          window.setTimeout(poll, PENDING_INTERVAL_MS);
          return;
        }
        if (pending || !data.running) {
          if (!pending) {
            update(data);
          }
          window.location.reload();
          return;
        }
        update(data);
      }
    }
    window.setTimeout(poll, INTERVAL_MS);
  }

  window.setTimeout(poll, pending ? PENDING_INTERVAL_MS : INTERVAL_MS);
})();
