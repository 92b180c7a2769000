// Keep the navigation badge of unread messages up to date without reloading.
//
// Four transports deliver the same notification objects
//   {id, name, data, timestamp}
// to ONE callback, handleNotifications(list):
//   poll      GET /notifications?after=<id>, then wait one interval, repeat
//   longpoll  GET /notifications/wait?after=<id>, repeat as soon as it answers
//   sse       EventSource on /notifications/stream (resumes with Last-Event-ID),
//             or on <push-url>/stream when the app names a push gateway
//   websocket WebSocket on <push-url>/ws?after=<id> (needs the gateway; each
//             message is a JSON list of notifications; reconnects with ?after=)
// The transport, interval and gateway come from the <script> tag's data-*
// attributes (set by the server from NOTIFY_TRANSPORT / NOTIFY_POLL_INTERVAL_MS /
// PUSH_URL, or ?transport=). Without a gateway, websocket falls back to sse.
//
// Unlike a setInterval loop, a request is only sent after the previous one
// finished (no overlapping polls); errors back off exponentially; nothing is
// sent while the tab is hidden; a 401 (signed out) stops everything.
(function () {
  "use strict";

  const settings = document.currentScript.dataset;
  const intervalMs = Number(settings.intervalMs) || 10000;
  const maxBackoffMs = Math.max(60000, intervalMs);
  const pushUrl = settings.pushUrl || ""; // the push gateway's base URL, if any

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
    pushUrl: pushUrl,
    opened: 0, // streams and sockets that opened
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
      const streamUrl = pushUrl ? `${pushUrl}/stream` : settings.streamUrl;
      // The gateway is another origin: send it the session cookie (it answers with CORS).
      source = new EventSource(`${streamUrl}?after=${state.cursor}`, { withCredentials: Boolean(pushUrl) });
      source.onopen = () => { state.failures = 0; state.opened += 1; };
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

  // websocket: one socket to the gateway; on close, check the session (a refused
  // handshake tells the page nothing), then reconnect after a pause with ?after=.
  function socketEvents() {
    let socket = null;

    function socketUrl() {
      const url = new URL(`${pushUrl}/ws`, window.location.href);
      url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
      url.searchParams.set("after", state.cursor);
      return url.href;
    }

    function open() {
      if (socket || state.stopped || document.hidden) return;
      state.requests += 1;
      const current = socket = new WebSocket(socketUrl());
      let opened = false;
      current.onopen = () => { opened = true; state.failures = 0; state.opened += 1; };
      current.onmessage = (event) => {
        try {
          handleNotifications(JSON.parse(event.data));
        } catch (error) {
          console.warn(`notifications: bad message from ${pushUrl}: ${error.message}`);
        }
      };
      current.onclose = async (event) => {
        if (socket !== current) return; // closed by us (tab hidden)
        socket = null;
        if (state.stopped) return;
        if (!opened) {
          // Refused: signed out (401), or the gateway is down or busy.
          try {
            await getJSON(`${settings.pollUrl}?after=${state.cursor}`).then(handleNotifications);
          } catch (error) {
            if (error instanceof SignedOut) return stop("signed out");
          }
          state.failures += 1;
        }
        // 1012 (gateway restarting) and other closes after a good run: come back soon,
        // at a random moment so that thousands of pages do not all return at once.
        const delay = opened ? 500 + Math.random() * 1500 : backoffMs(1000);
        console.info(`notifications: socket closed (${event.code}); reconnecting in ${Math.round(delay)} ms`);
        await sleep(delay);
        open();
      };
    }

    document.addEventListener("visibilitychange", () => {
      if (document.hidden && socket) {
        const current = socket;
        socket = null;
        current.close();
      } else {
        open();
      }
    });
    open();
  }

  if (state.transport === "websocket" && pushUrl && window.WebSocket) {
    socketEvents();
  } else if ((state.transport === "sse" || state.transport === "websocket") && window.EventSource) {
    state.transport = "sse";
    streamEvents();
  } else if (state.transport === "longpoll") {
    requestLoop((after) => `${settings.waitUrl}?after=${after}`, 0, 1000);
  } else {
    state.transport = "poll";
    requestLoop((after) => `${settings.pollUrl}?after=${after}`, intervalMs, intervalMs);
  }
})();
