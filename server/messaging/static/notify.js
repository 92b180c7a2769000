// Keep the navigation badge of unread messages up to date without reloading.
//
// Three transports deliver the same notification objects
//   {id, name, data, timestamp}
// to ONE callback, handleNotifications(list):
//   poll      GET /notifications?after=<id>, then wait one interval, repeat
//   longpoll  GET /notifications/wait?after=<id>, repeat as soon as it answers
//   sse       EventSource on /notifications/stream (resumes with Last-Event-ID)
// The transport and interval come from the <script> tag's data-* attributes
// (set by the server from NOTIFY_TRANSPORT / NOTIFY_POLL_INTERVAL_MS, or ?transport=).
//
// Unlike a setInterval loop, a request is only sent after the previous one
// finished (no overlapping polls); errors back off exponentially; nothing is
// sent while the tab is hidden; a 401 (signed out) stops everything.
(function () {
  "use strict";

  const settings = document.currentScript.dataset;
  const intervalMs = Number(settings.intervalMs) || 10000;
  const maxBackoffMs = Math.max(60000, intervalMs);

  // What the page's script did, for people (and tests) who want to look.
  const state = {
    transport: settings.transport || "poll",
    cursor: 0,
    requests: 0,
    inFlight: 0,
    maxInFlight: 0,
    failures: 0,
    stopped: false,
    received: 0,
  };
  window.notifyState = state;

  function setMessageCount(count) {
    const badge = document.getElementById("message_count");
    if (!badge) return;
    badge.textContent = count;
    // A class, not an inline style: the page's Content-Security-Policy allows no inline styles.
    badge.classList.toggle("invisible", !count);
  }

  // The one callback, whatever the transport.
  function handleNotifications(notifications) {
    for (const n of notifications) {
      if (n.id <= state.cursor) continue; // already seen
      state.cursor = n.id;
      state.received += 1;
      if (n.name === "unread_message_count") setMessageCount(n.data);
    }
  }

  class SignedOut extends Error {}

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  function whenVisible() {
    if (!document.hidden) return Promise.resolve();
    return new Promise((resolve) => {
      document.addEventListener("visibilitychange", function wait() {
        if (document.hidden) return;
        document.removeEventListener("visibilitychange", wait);
        resolve();
      });
    });
  }

  function backoffMs(base) {
    return Math.min(base * 2 ** state.failures, maxBackoffMs);
  }

  async function getJSON(url) {
    state.requests += 1;
    state.inFlight += 1;
    state.maxInFlight = Math.max(state.maxInFlight, state.inFlight);
    try {
      const response = await fetch(url, {
        headers: { Accept: "application/json" },
        credentials: "same-origin",
        cache: "no-store",
      });
      if (response.status === 401) throw new SignedOut();
      if (!response.ok) throw new Error(`HTTP ${response.status} from ${url}`);
      return await response.json();
    } finally {
      state.inFlight -= 1;
    }
  }

  function stop(reason) {
    state.stopped = true;
    console.info(`notifications stopped: ${reason}`);
  }

  // poll and longpoll: one request at a time, the next one scheduled when it ends.
  async function requestLoop(urlFor, pauseMs, errorBaseMs) {
    while (!state.stopped) {
      await whenVisible();
      try {
        handleNotifications(await getJSON(urlFor(state.cursor)));
        state.failures = 0;
        if (pauseMs) await sleep(pauseMs);
      } catch (error) {
        if (error instanceof SignedOut) return stop("signed out");
        const delay = backoffMs(errorBaseMs);
        state.failures += 1;
        console.warn(`notifications: ${error.message}; retrying in ${delay} ms`);
        await sleep(delay);
      }
    }
  }

  function streamEvents() {
    let source = null;

    function open() {
      if (source || state.stopped || document.hidden) return;
      state.requests += 1;
      source = new EventSource(`${settings.streamUrl}?after=${state.cursor}`);
      source.onopen = () => { state.failures = 0; };
      source.onmessage = (event) => handleNotifications([JSON.parse(event.data)]);
      source.onerror = async () => {
        // CONNECTING: the browser reconnects by itself (sending Last-Event-ID).
        if (source.readyState !== EventSource.CLOSED) return;
        // CLOSED: the server refused the stream; find out why before retrying.
        source = null;
        try {
          await getJSON(`${settings.pollUrl}?after=${state.cursor}`).then(handleNotifications);
        } catch (error) {
          if (error instanceof SignedOut) return stop("signed out");
        }
        const delay = backoffMs(1000);
        state.failures += 1;
        await sleep(delay);
        open();
      };
    }

    document.addEventListener("visibilitychange", () => {
      if (document.hidden && source) {
        source.close();
        source = null;
      } else {
        open();
      }
    });
    open();
  }

  if (state.transport === "sse" && window.EventSource) {
    streamEvents();
  } else if (state.transport === "longpoll") {
    requestLoop((after) => `${settings.waitUrl}?after=${after}`, 0, 1000);
  } else {
    state.transport = "poll";
    requestLoop((after) => `${settings.pollUrl}?after=${after}`, intervalMs, intervalMs);
  }
})();
