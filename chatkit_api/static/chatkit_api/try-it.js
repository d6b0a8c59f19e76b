// The try-it page: ChatKit embedded the way a site embeds it, against this service, with a
// recap form for the current thread and a line for everything that happens.
//
// Loaded before ChatKit's own script, so that it can tell when that script fails to load;
// everything else waits for the page to be parsed.
(() => {
  "use strict";

  const config = JSON.parse(document.getElementById("try-it-config").textContent);
  const chatkitScriptUrl = new URL(config.chatkitScriptUrl, location.href).href;
  const chatkitUrl = new URL(config.apiUrl, location.href).href;
  // The custom action that mails the open thread (docs/api.md, "Send recap from the widget").
  const RECAP_ACTION = "send_recap";
  let threadId = null;
  // The address the last recap asked a copy for, for the line that says it was sent.
  let recapEmail = "";

  function whenParsed(callback) {
    if (document.readyState === "loading") {
      document.addEventListener("DOMContentLoaded", callback, { once: true });
    } else {
      callback();
    }
  }

  function report(text, kind = "info") {
    whenParsed(() => {
      const entry = document.createElement("li");
      entry.className = kind;
      const time = document.createElement("time");
      time.textContent = new Date().toLocaleTimeString();
      entry.append(time, text);
      document.getElementById("status").append(entry);
    });
  }

  // A script's load error does not bubble; it is seen while it goes down to the script.
  window.addEventListener(
    "error",
    (event) => {
      if (event.target instanceof HTMLScriptElement && event.target.src === chatkitScriptUrl) {
        report(`ChatKit's script could not be loaded from ${chatkitScriptUrl}. Is it reachable from this browser?`, "error");
      }
    },
    true,
  );

  function csrfToken() {
    const prefix = `${config.csrfCookieName}=`;
    const cookie = document.cookie.split("; ").find((part) => part.startsWith(prefix));
    return cookie ? decodeURIComponent(cookie.slice(prefix.length)) : null;
  }

  // Same-origin calls, as a site's own pages make them: the browser sends the Origin header
  // and the cookies, and the CSRF token goes along whenever Django's CSRF cookie is set.
  async function post(url, body) {
    const headers = { "Content-Type": "application/json" };
    const token = csrfToken();
    if (token) headers["X-CSRFToken"] = token;
    let response;
    try {
      response = await fetch(url, { method: "POST", credentials: "same-origin", headers, body: JSON.stringify(body) });
    } catch (error) {
      throw new Error(`the API could not be reached (${error.message})`);
    }
    const reply = await response.json().catch(() => null);
    if (!response.ok) {
      throw new Error(`HTTP ${response.status}: ${(reply && reply.error) || response.statusText}`);
    }
    return reply;
  }

  function expiry(reply) {
    return reply.expires_at ? `, valid until ${new Date(reply.expires_at * 1000).toLocaleTimeString()}` : "";
  }

  // ChatKit calls this with null for its first secret, and with the secret it holds when
  // that one is about to expire. Either way the session endpoint makes a new one; the
  // visitor cookie keeps the same ChatKit user, and so the same threads.
  async function getClientSecret(currentClientSecret) {
    const action = currentClientSecret ? "refreshed" : "created";
    try {
      const reply = await post(config.apiUrl, { locale: navigator.language, pageUrl: location.href });
      report(`Session ${action}: ChatKit has a client secret${expiry(reply)}.`, "ok");
      return reply.client_secret;
    } catch (error) {
      report(`Session not ${action}: ${error.message}`, "error");
      throw error;
    }
  }

  function showThread(form) {
    form.querySelector("button").disabled = !threadId;
    form.querySelector("#recap-thread").textContent = threadId
      ? `The recap mails thread ${threadId}.`
      : "Start a conversation first: the recap mails the current thread.";
  }

  function recapSent(transcriptId, email) {
    if (email && config.visitorCopy) return `Recap sent: transcript #${transcriptId}, mailed to staff and to ${email}.`;
    if (email) return `Recap sent: transcript #${transcriptId}, mailed to staff (a copy to ${email} needs ALLOW_USER_RECAP=true).`;
    return `Recap sent: transcript #${transcriptId}, mailed to staff.`;
  }

  // Managed: the transcript endpoint, called as the visitor (their cookie, this page's Origin).
  async function sendRecapByTranscriptCall(lead) {
    try {
      const reply = await post(config.transcriptUrl, { threadId, ...lead });
      report(recapSent(reply.id, lead.email), "ok");
    } catch (error) {
      report(`Recap not sent: ${error.message}`, "error");
    }
  }

  // Self-hosted: the send_recap action on the open thread. What came of it is in the action's
  // reply: the `recap_sent` effect (the chatkit.effect listener reports it) or an error
  // (chatkitFetch reports that).
  async function sendRecapByAction(chatkit, lead) {
    recapEmail = lead.email;
    try {
      await chatkit.sendCustomAction({ type: RECAP_ACTION, payload: lead });
    } catch (error) {
      report(`Recap not sent: ${error.message}`, "error");
    }
  }

  function setUpRecapForm(form, chatkit) {
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const fields = new FormData(form);
      const lead = {
        mode: "recap",
        name: fields.get("name").trim(),
        email: fields.get("email").trim(),
        pageUrl: location.href,
      };
      form.querySelector("button").disabled = true;
      try {
        await (config.selfHosted ? sendRecapByAction(chatkit, lead) : sendRecapByTranscriptCall(lead));
      } finally {
        showThread(form);
      }
    });
  }

  function setUpChatKit(chatkit, form) {
    chatkit.addEventListener("chatkit.thread.change", (event) => {
      threadId = event.detail.threadId;
      report(threadId ? `Thread ${threadId} is open.` : "A new conversation: no thread yet.");
      showThread(form);
    });
    chatkit.addEventListener("chatkit.error", (event) => {
      report(`ChatKit reported an error: ${event.detail.error.message}`, "error");
    });
    if (config.selfHosted) {
      chatkit.addEventListener("chatkit.effect", (event) => {
        if (event.detail.name === "recap_sent") report(recapSent(event.detail.data.transcriptId, recapEmail), "ok");
      });
      report(`ChatKit talks to ${config.apiUrl}, where this service runs the agent (self-hosted).`);
      chatkit.setOptions({
        api: {
          url: config.apiUrl,
          domainKey: config.domainKey,
          fetch: chatkitFetch,
          uploadStrategy: { type: "two_phase" },
        },
        composer: { attachments: config.attachments },
        history: { enabled: true },
        threadItemActions: { feedback: true },
      });
    } else {
      chatkit.setOptions({ api: { getClientSecret } });
    }
  }

  function isChatKitCall(input) {
    return new URL(input instanceof Request ? input.url : input, location.href).href === chatkitUrl;
  }

  function isRecapAction(init) {
    try {
      const request = JSON.parse(init.body);
      return request.type === "threads.custom_action" && request.params.action.type === RECAP_ACTION;
    } catch {
      return false;
    }
  }

  // Self-hosted: ChatKit's calls to this service carry the visitor cookie, and this page's
  // address for the agent's page_url, as the snippet for a site does; anything else (a file's
  // upload) goes as ChatKit sends it. A recap's reply is also read for the log.
  async function chatkitFetch(input, init) {
    if (!isChatKitCall(input)) return fetch(input, init);
    const headers = new Headers(init && init.headers);
    headers.set("X-Page-URL", location.href);
    const response = await fetch(input, { ...init, headers, credentials: "same-origin" });
    if (init && isRecapAction(init)) reportRecapFailure(response.clone());
    return response;
  }

  // What the recap_sent effect cannot say: a refusal (an error status), or an `error` event in
  // the action's stream (details the server refused, a mail SES did not take).
  async function reportRecapFailure(response) {
    if (!response.ok) {
      const reply = await response.json().catch(() => null);
      report(`Recap not sent: HTTP ${response.status}: ${(reply && reply.error) || response.statusText}`, "error");
      return;
    }
    for (const event of serverSentEvents(await response.text())) {
      if (event.type === "error") report(`Recap not sent: ${event.message}`, "error");
    }
  }

  function serverSentEvents(text) {
    return text
      .split("\n\n")
      .map((block) => block.split("\n").find((line) => line.startsWith("data: ")))
      .filter(Boolean)
      .map((line) => JSON.parse(line.slice("data: ".length)));
  }

  whenParsed(() => {
    const chatkit = document.getElementById("chatkit");
    const form = document.getElementById("recap-form");
    setUpRecapForm(form, chatkit);
    report(`Loading ChatKit from ${chatkitScriptUrl}.`);
    customElements.whenDefined("openai-chatkit").then(() => {
      report("ChatKit is loaded.");
      setUpChatKit(chatkit, form);
    });
  });
})();
