// A stand-in for ChatKit's script (cdn.platform.openai.com/deployments/chatkit/chatkit.js),
// which the browser tests cannot reach. Served by tests/test_pages_browser.py only.
//
// It defines the <openai-chatkit> element with the parts of ChatKit's public API the
// try-it page uses, behaving as ChatKit documents them:
// - setOptions({api: {getClientSecret}}) starts the widget, which calls
//   getClientSecret(null) for its first secret;
// - when the secret is about to expire ChatKit calls getClientSecret(currentSecret); the
//   test makes that happen with window.chatkitStandIn.expireSecret();
// - the first message of a conversation starts a thread and fires `chatkit.thread.change`
//   with {threadId}; setThreadId(id) fires it too; failures fire `chatkit.error` with {error};
// - setOptions({api: {url, domainKey, fetch}}) talks the ChatKit protocol to a self-hosted
//   server instead, every request through the custom `fetch`: messages are `threads.create`
//   and `threads.add_user_message` requests, whose server-sent events give the thread, the
//   assistant's answer, errors (shown in the thread, as ChatKit shows them) and client
//   effects (fired as `chatkit.effect` with {name, data});
// - sendCustomAction(action, itemId) sends `threads.custom_action` on the open thread;
// - with composer.attachments.enabled and api.uploadStrategy {type: "two_phase"}, a file
//   chosen in the composer is announced with `attachments.create`, then sent as the request
//   body to the reply's upload_descriptor (its method, URL and headers), and goes with the
//   next message as its id; a refusal fires `chatkit.error`.
// What the widget was asked is kept in window.chatkitStandIn for the test to read.
(() => {
  "use strict";

  const record = {
    options: null,
    protocolRequests: [],
    uploads: [],
    clientSecretCalls: [],
    clientSecrets: [],
    threadId: null,
    element: null,
    expireSecret() {
      return record.element.refreshSecret();
    },
  };
  window.chatkitStandIn = record;

  class OpenAIChatKit extends HTMLElement {
    #options = null;
    #secret = null;
    // Files chosen in the composer, uploaded and waiting for the next message.
    #pending = [];

    constructor() {
      super();
      const root = this.attachShadow({ mode: "open" });
      root.innerHTML = `
        <style>
          :host { font-family: system-ui, sans-serif; }
          .frame { display: flex; flex-direction: column; height: 100%; box-sizing: border-box; padding: 1rem; gap: 0.5rem; }
          .messages { flex: 1; overflow-y: auto; display: flex; flex-direction: column; gap: 0.5rem; }
          .user { align-self: flex-end; background: #1f6feb; color: white; padding: 0.4rem 0.7rem; border-radius: 12px; }
          .assistant { align-self: flex-start; background: #eaeef2; padding: 0.4rem 0.7rem; border-radius: 12px; }
          form { display: flex; gap: 0.5rem; }
          .error { align-self: stretch; color: #b42318; }
          input { flex: 1; min-width: 0; font: inherit; padding: 0.4rem; }
          /* A file input is wide by itself: it shrinks, so the Send button stays in the widget. */
          input[type="file"] { flex: 0 1 8rem; }
          .attachments { font-size: 0.85rem; color: #57606a; }
        </style>
        <div class="frame">
          <div class="messages" part="messages"><p class="assistant">How can we help? (ChatKit stand-in)</p></div>
          <p class="attachments" part="attachments"></p>
          <form part="composer">
            <input name="message" placeholder="Message" disabled>
            <input name="file" type="file" hidden disabled>
            <button disabled>Send</button>
          </form>
        </div>`;
      root.querySelector("form").addEventListener("submit", (event) => {
        event.preventDefault();
        const input = root.querySelector("input[name=message]");
        this.sendUserMessage({ text: input.value });
        input.value = "";
      });
      root.querySelector("input[type=file]").addEventListener("change", async (event) => {
        for (const file of event.target.files) await this.#attach(file);
        event.target.value = "";
      });
      record.element = this;
    }

    setOptions(options) {
      this.#options = options;
      const { url, domainKey, uploadStrategy } = options.api;
      record.options = {
        api: { url, domainKey, uploadStrategy, fetch: typeof options.api.fetch },
        composer: options.composer,
        history: options.history,
      };
      if (url) {
        this.shadowRoot.querySelector("input[type=file]").hidden = !this.#attachmentsEnabled();
        this.#enable();
        this.#fire("chatkit.ready", undefined);
      } else {
        this.#connect(null);
      }
    }

    #attachmentsEnabled() {
      const attachments = this.#options.composer && this.#options.composer.attachments;
      return Boolean(attachments && attachments.enabled);
    }

    #enable() {
      for (const control of this.shadowRoot.querySelectorAll("input, button")) control.disabled = false;
    }

    async #connect(currentClientSecret) {
      record.clientSecretCalls.push(currentClientSecret);
      try {
        this.#secret = await this.#options.api.getClientSecret(currentClientSecret);
      } catch (error) {
        this.#fire("chatkit.error", { error });
        return;
      }
      record.clientSecrets.push(this.#secret);
      this.#enable();
      if (currentClientSecret === null) this.#fire("chatkit.ready", undefined);
    }

    refreshSecret() {
      return this.#connect(this.#secret);
    }

    async setThreadId(threadId) {
      record.threadId = threadId;
      this.#fire("chatkit.thread.change", { threadId });
    }

    async sendUserMessage({ text }) {
      const messages = this.shadowRoot.querySelector(".messages");
      const message = document.createElement("p");
      message.className = "user";
      message.textContent = text;
      messages.append(message);
      this.#fire("chatkit.response.start", undefined);
      if (this.#options.api.url) {
        await this.#askServer(text, messages);
        return;
      }
      if (record.threadId === null) {
        const id = Array.from(crypto.getRandomValues(new Uint8Array(8)), (b) => b.toString(16).padStart(2, "0")).join("");
        await this.setThreadId(`cthr_${id}`);
      }
      const reply = document.createElement("p");
      reply.className = "assistant";
      reply.textContent = "Thanks! Which car is it?";
      messages.append(reply);
      this.#fire("chatkit.response.end", undefined);
    }

    async #send(request) {
      record.protocolRequests.push(request.type);
      const send = this.#options.api.fetch || fetch;
      const response = await send(this.#options.api.url, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(request),
      });
      if (!response.ok) throw new Error(`HTTP ${response.status}: ${(await response.json()).error}`);
      return response;
    }

    // ChatKit's two-phase upload: the server names where the file goes, then the file goes there.
    async #attach(file) {
      if (!this.#attachmentsEnabled() || this.#options.api.uploadStrategy?.type !== "two_phase") return;
      try {
        const created = await this.#send({
          type: "attachments.create",
          params: { name: file.name, size: file.size, mime_type: file.type },
          metadata: {},
        });
        const attachment = await created.json();
        const { method, url, headers } = attachment.upload_descriptor;
        const send = this.#options.api.fetch || fetch;
        const uploaded = await send(url, { method, headers, body: file });
        record.uploads.push({ method, url, headers, size: file.size, status: uploaded.status });
        if (!uploaded.ok) throw new Error(`Upload of ${file.name} failed: HTTP ${uploaded.status}`);
        this.#pending.push(attachment);
        this.shadowRoot.querySelector(".attachments").textContent = this.#pending.map((a) => a.name).join(", ");
      } catch (error) {
        this.#fire("chatkit.error", { error });
      }
    }

    async #askServer(text, messages) {
      const attachments = this.#pending.map((attachment) => attachment.id);
      this.#pending = [];
      this.shadowRoot.querySelector(".attachments").textContent = "";
      const input = { content: [{ type: "input_text", text }], attachments, inference_options: {} };
      const request = record.threadId === null
        ? { type: "threads.create", params: { input }, metadata: {} }
        : { type: "threads.add_user_message", params: { thread_id: record.threadId, input }, metadata: {} };
      await this.#stream(request, messages);
    }

    async sendCustomAction(action, itemId) {
      const request = {
        type: "threads.custom_action",
        params: { thread_id: record.threadId, item_id: itemId ?? null, action },
        metadata: {},
      };
      this.#fire("chatkit.response.start", undefined);
      await this.#stream(request, this.shadowRoot.querySelector(".messages"));
    }

    async #stream(request, messages) {
      let response;
      try {
        response = await this.#send(request);
      } catch (error) {
        this.#fire("chatkit.error", { error });
        return;
      }
      for (const event of serverSentEvents(await response.text())) {
        if (event.type === "thread.created") await this.setThreadId(event.thread.id);
        if (event.type === "thread.item.done" && event.item.type === "assistant_message") {
          this.#show(messages, "assistant", event.item.content.map((part) => part.text).join(""));
        }
        if (event.type === "error") this.#show(messages, "error", event.message);
        if (event.type === "client_effect") this.#fire("chatkit.effect", { name: event.name, data: event.data });
      }
      this.#fire("chatkit.response.end", undefined);
    }

    #show(messages, kind, text) {
      const line = document.createElement("p");
      line.className = kind;
      line.textContent = text;
      messages.append(line);
    }

    #fire(name, detail) {
      this.dispatchEvent(new CustomEvent(name, { detail }));
    }
  }

  // The `data:` of each event in a text/event-stream body; comments (heartbeats) are skipped.
  function serverSentEvents(text) {
    return text
      .split("\n\n")
      .map((block) => block.split("\n").filter((line) => line.startsWith("data: ")).map((line) => line.slice(6)).join("\n"))
      .filter(Boolean)
      .map((data) => JSON.parse(data));
  }

  customElements.define("openai-chatkit", OpenAIChatKit);
})();
