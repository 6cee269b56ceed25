// ONE-DATA-STUDIO console: the few behaviours a server-rendered page cannot have (streaming answers,
// uploads with progress, write actions). Every request goes to this server's own /api/v1 routes.
"use strict";

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (name === "text") node.textContent = value;
    else node.setAttribute(name, value);
  }
  for (const child of children) node.append(child);
  return node;
}

async function callApi(method, url, body) {
  const options = { method, headers: { Accept: "application/json" } };
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(url, options);
  let payload = null;
  try { payload = await response.json(); } catch (_) { payload = null; }
  if (!response.ok) {
    throw new Error((payload && payload.message) || `HTTP ${response.status}`);
  }
  return payload && "data" in payload ? payload.data : payload;
}

function showError(anchor, message) {
  let box = anchor.parentElement.querySelector("[data-action-error]");
  if (!box) {
    box = el("p", { class: "error", role: "alert", "data-action-error": "" });
    anchor.after(box);
  }
  box.textContent = message;
}

// Buttons with data-action="METHOD" data-url=... [data-body=JSON] [data-confirm] [data-then=URL]
function bindActions() {
  for (const button of document.querySelectorAll("[data-action]")) {
    button.addEventListener("click", async () => {
      if (button.dataset.confirm && !window.confirm(button.dataset.confirm)) return;
      button.disabled = true;
      try {
        const body = button.dataset.body ? JSON.parse(button.dataset.body) : undefined;
        await callApi(button.dataset.action, button.dataset.url, body);
        if (button.dataset.then) window.location.assign(button.dataset.then);
        else window.location.reload();
      } catch (error) {
        button.disabled = false;
        showError(button, error.message);
      }
    });
  }
}

// Forms posted as JSON: data-json-form=URL, data-then=URL with {name} for the answer's name.
function bindJsonForms() {
  for (const form of document.querySelectorAll("[data-json-form]")) {
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const body = Object.fromEntries(new FormData(form).entries());
      for (const field of form.querySelectorAll("input[data-list]")) {
        body[field.name] = field.value.split(",").map((item) => item.trim()).filter(Boolean);
      }
      const problem = form.querySelector("[data-form-error]");
      try {
        const answer = await callApi(form.dataset.method || "POST", form.dataset.jsonForm, body);
        window.location.assign(form.dataset.then.replace("{name}", encodeURIComponent(answer.name)));
      } catch (error) {
        problem.hidden = false;
        problem.textContent = error.message;
      }
    });
  }
}

// Uploads: one request per file with its progress bar, then the documents are watched until the
// ingest has indexed (or quarantined) each one, and the page is reloaded to show them.
function uploadOne(url, file, row) {
  return new Promise((resolve, reject) => {
    const bar = el("progress", { max: "100", value: "0", "aria-label": `upload of ${file.name}` });
    const state = el("span", { text: " uploading" });
    row.append(bar, state);
    const request = new XMLHttpRequest();
    request.open("POST", url);
    request.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) bar.value = Math.round((100 * event.loaded) / event.total);
    });
    request.addEventListener("load", () => {
      let payload = null;
      try { payload = JSON.parse(request.responseText); } catch (_) { payload = null; }
      if (request.status >= 200 && request.status < 300) {
        bar.value = 100;
        state.textContent = " uploaded, indexing…";
        resolve(state);
      } else {
        state.textContent = " " + ((payload && payload.message) || `HTTP ${request.status}`);
        state.className = "error";
        reject(new Error(state.textContent));
      }
    });
    request.addEventListener("error", () => reject(new Error("the upload did not reach the server")));
    const body = new FormData();
    body.append("file", file);
    request.send(body);
  });
}

async function watchDocuments(url, names, states) {
  const done = new Set(["indexed", "quarantined"]);
  for (let attempt = 0; attempt < 900; attempt += 1) {
    const listed = await callApi("GET", url);
    const byName = new Map(listed.items.map((d) => [d.uri.split("/").pop(), d.status]));
    names.forEach((name, index) => {
      const status = byName.get(name);
      if (status) states[index].textContent = ` ${status}`;
    });
    if (names.every((name) => done.has(byName.get(name)))) return;
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

function bindUploads() {
  for (const form of document.querySelectorAll("[data-upload]")) {
    const input = form.querySelector("input[type=file]");
    const list = form.querySelector("[data-upload-list]");
    const send = async (files) => {
      if (!files.length) return;
      const rows = files.map((file) => {
        const row = el("li", { "data-upload-file": file.name }, el("strong", { text: file.name + " " }));
        list.append(row);
        return row;
      });
      try {
        const states = await Promise.all(files.map((file, i) => uploadOne(form.dataset.upload, file, rows[i])));
        await watchDocuments(form.dataset.upload, files.map((f) => f.name), states);
        window.location.reload();
      } catch (error) {
        list.append(el("li", { class: "error", role: "alert", text: error.message }));
      }
    };
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      send(Array.from(input.files));
    });
    form.addEventListener("dragover", (event) => { event.preventDefault(); form.classList.add("over"); });
    form.addEventListener("dragleave", () => form.classList.remove("over"));
    form.addEventListener("drop", (event) => {
      event.preventDefault();
      form.classList.remove("over");
      send(Array.from(event.dataTransfer.files));
    });
  }
}

// The re-sync button: starts an ingest of the knowledge base from its source, shows the run's state until
// it ends, then reloads the page to show the documents as they are now.
function describeRun(run) {
  if (run.state !== "completed" || !run.result) return run.error ? `${run.state}: ${run.error}` : run.state;
  const r = run.result;
  return `completed: ${r.indexed} indexed, ${r.unchanged} unchanged, ${r.quarantined} quarantined, ${r.deleted} deleted`;
}

function bindSync() {
  for (const button of document.querySelectorAll("[data-sync]")) {
    const state = button.parentElement.querySelector("[data-sync-state]");
    button.addEventListener("click", async () => {
      button.disabled = true;
      try {
        let run = await callApi("POST", button.dataset.sync);
        state.textContent = `Sync ${run.state}…`;
        while (!["completed", "failed", "interrupted"].includes(run.state)) {
          await new Promise((resolve) => setTimeout(resolve, 1000));
          run = await callApi("GET", `/api/v1/runs/${encodeURIComponent(run.id)}`);
          state.textContent = `Sync ${run.state}…`;
        }
        state.textContent = `Sync ${describeRun(run)}.`;
        state.dataset.syncDone = run.state;
        if (run.state === "completed") window.setTimeout(() => window.location.reload(), 1500);
        else button.disabled = false;
      } catch (error) {
        button.disabled = false;
        state.textContent = "";
        showError(button, error.message);
      }
    });
  }
}

// Chat: answers streamed from /api/v1/ask (server-sent events: delta, sources, done, error).
function openCitation(citation, answerKb) {
  const panel = document.querySelector("[data-citation-panel]");
  const kb = citation.knowledge_base || answerKb;
  panel.querySelector("[data-panel-marker]").textContent = `[${citation.marker}]`;
  const where = [citation.label || (citation.doc_uri || "").split("/").pop() || citation.dataset || ""];
  if (citation.heading) where.push(citation.heading);
  if (citation.page) where.push(`page ${citation.page}`);
  panel.querySelector("[data-panel-where]").textContent = where.filter(Boolean).join(" · ");
  const passage = panel.querySelector("[data-panel-passage]");
  passage.textContent = citation.excerpt || "";
  if (!citation.excerpt && citation.chunk_id && kb) {  // a stored answer: read the passage from the index
    passage.textContent = "Reading the passage…";
    callApi("GET", `/api/v1/knowledge-bases/${encodeURIComponent(kb)}/chunks/${encodeURIComponent(citation.chunk_id)}`)
      .then((chunk) => { passage.textContent = chunk.text; })
      .catch((error) => { passage.textContent = error.message; });
  } else if (!citation.excerpt) {
    passage.textContent = "The passage is no longer indexed; open the document to read it.";
  }
  const link = panel.querySelector("[data-panel-link]");
  if (kb && citation.doc_uri) {
    const words = (citation.excerpt || citation.heading || (citation.doc_uri || "").split("/").pop()).slice(0, 120);
    link.href = `/console/knowledge-bases/${encodeURIComponent(kb)}?q=${encodeURIComponent(words)}`;
    link.hidden = false;
  } else if (citation.dataset) {
    link.href = `/console/datasets/${encodeURIComponent(citation.dataset)}`;
    link.hidden = false;
  } else {
    link.hidden = true;
  }
  panel.hidden = false;
  panel.focus();
}

function renderAnswerText(target, text, citations, kb) {
  target.textContent = "";
  const byMarker = new Map((citations || []).map((c) => [String(c.marker), c]));
  const parts = text.split(/(\[\d+\])/);
  for (const part of parts) {
    const match = /^\[(\d+)\]$/.exec(part);
    const citation = match && byMarker.get(match[1]);
    if (citation) {
      const button = el("button", { type: "button", class: "cite", "aria-label": `source ${match[1]}`, text: part });
      button.addEventListener("click", () => openCitation(citation, kb));
      target.append(button);
    } else {
      target.append(part);
    }
  }
}

function renderSql(container, sql) {
  if (!sql) return;
  const block = el("div", { class: "sql-result" });
  block.append(el("p", { class: "role", text: "SQL" }), el("pre", { class: "wrap", "data-sql-text": "", text: sql.sql || sql }));
  if (sql.error) block.append(el("p", { class: "error", text: sql.error }));
  if (sql.columns) block.append(resultTable(sql.columns, sql.rows || []));
  if (sql.columns) {
    const chart = barChart(sql.columns, sql.rows || []);
    if (chart) block.append(chart);
  }
  container.append(block);
}

function resultTable(columns, rows) {
  const head = el("tr", {}, ...columns.map((c) => el("th", { scope: "col", text: String(c) })));
  const body = rows.map((row) => el("tr", {}, ...row.map((v) => el("td", { text: v === null ? "" : String(v) }))));
  return el("div", { class: "scroll", tabindex: "0", role: "region", "aria-label": "result" },
    el("table", { "data-result-table": "" }, el("thead", {}, head), el("tbody", {}, ...body)));
}

// A result of one category column and one number column, drawn as horizontal bars.
function barChart(columns, rows) {
  if (columns.length !== 2 || rows.length < 1 || rows.length > 30) return null;
  if (!rows.every((row) => typeof row[1] === "number" && typeof row[0] !== "number")) return null;
  const top = Math.max(...rows.map((row) => Math.abs(row[1]))) || 1;
  const svgns = "http://www.w3.org/2000/svg";
  const height = rows.length * 22 + 4;
  const svg = document.createElementNS(svgns, "svg");
  svg.setAttribute("viewBox", `0 0 420 ${height}`);
  svg.setAttribute("width", "420");
  svg.setAttribute("height", String(height));
  svg.setAttribute("role", "img");
  svg.setAttribute("class", "chart");
  svg.setAttribute("aria-label", `${columns[1]} by ${columns[0]}`);
  rows.forEach((row, index) => {
    const y = 2 + index * 22;
    const label = document.createElementNS(svgns, "text");
    label.setAttribute("x", "0");
    label.setAttribute("y", String(y + 14));
    label.setAttribute("font-size", "12");
    label.textContent = String(row[0] === null ? "(null)" : row[0]).slice(0, 18);
    const bar = document.createElementNS(svgns, "rect");
    bar.setAttribute("x", "130");
    bar.setAttribute("y", String(y + 2));
    bar.setAttribute("height", "16");
    bar.setAttribute("width", String(Math.max(1, (220 * Math.abs(row[1])) / top)));
    bar.setAttribute("fill", "#1f5fbf");
    const value = document.createElementNS(svgns, "text");
    value.setAttribute("x", String(134 + (220 * Math.abs(row[1])) / top));
    value.setAttribute("y", String(y + 14));
    value.setAttribute("font-size", "12");
    value.textContent = String(row[1]);
    svg.append(label, bar, value);
  });
  return el("div", { class: "scroll" }, svg);
}

function addMessage(list, role, text) {
  const text_node = el("div", { class: "text", text });
  const message = el("article", { class: `message message-${role}` }, el("p", { class: "role", text: role }), text_node);
  list.append(message);
  return { message, text: text_node };
}

function parseEvents(buffer, onEvent) {
  let index;
  while ((index = buffer.indexOf("\n\n")) >= 0) {
    const raw = buffer.slice(0, index);
    buffer = buffer.slice(index + 2);
    let name = "message";
    const data = [];
    for (const line of raw.split("\n")) {
      if (line.startsWith("event:")) name = line.slice(6).trim();
      else if (line.startsWith("data:")) data.push(line.slice(5).trim());
    }
    if (data.length) onEvent(name, JSON.parse(data.join("\n")));
  }
  return buffer;
}

function bindChat() {
  const form = document.querySelector("[data-ask]");
  const list = document.querySelector("[data-messages]");
  const stored = document.getElementById("conversation-data");
  const close = document.querySelector("[data-panel-close]");
  if (close) close.addEventListener("click", () => { document.querySelector("[data-citation-panel]").hidden = true; });
  if (!list) return;
  const kbOf = () => (form ? form.elements.kb.value : "");
  const conversation = stored ? JSON.parse(stored.textContent) : null;
  for (const message of (conversation && conversation.messages) || []) {
    const shown = addMessage(list, message.role, message.content);
    if (message.role === "assistant") {
      renderAnswerText(shown.text, message.content, message.citations, kbOf());
      if (message.sql) renderSql(shown.message, { sql: message.sql });
    }
  }
  if (!form) return;
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const problem = form.querySelector("[data-form-error]");
    problem.hidden = true;
    const question = form.elements.question.value.trim();
    if (!question) return;
    const datasets = Array.from(form.elements.datasets.selectedOptions).map((o) => o.value);
    const body = { question, mode: form.elements.mode.value, stream: true };
    if (form.elements.kb.value) body.kb = form.elements.kb.value;
    if (datasets.length) body.datasets = datasets;
    if (form.dataset.conversation) body.conversation_id = form.dataset.conversation;
    const kb = kbOf();
    addMessage(list, "user", question);
    const answer = addMessage(list, "assistant", "");
    answer.message.setAttribute("aria-busy", "true");
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    let text = "";
    try {
      const response = await fetch("/api/v1/ask", {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
        body: JSON.stringify(body),
      });
      if (!response.ok) {
        let payload = null;
        try { payload = await response.json(); } catch (_) { payload = null; }
        throw new Error((payload && payload.message) || `HTTP ${response.status}`);
      }
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer = parseEvents(buffer + decoder.decode(value, { stream: true }), (name, data) => {
          if (name === "delta") {
            text += data.text;
            answer.text.textContent = text;
          } else if (name === "sources") {
            renderAnswerText(answer.text, text, data.citations, kb);
            renderSql(answer.message, data.sql);
            for (const note of data.notes || []) answer.message.append(el("p", { class: "muted", text: note }));
          } else if (name === "done") {
            form.dataset.conversation = data.conversation_id;
            const url = `/console/chat?c=${encodeURIComponent(data.conversation_id)}`;
            window.history.replaceState(null, "", url);
            const links = document.querySelector("[data-conversation-list]");
            if (links && !links.querySelector(`a[href="${url}"]`)) {
              links.prepend(el("li", { class: "current" }, el("a", { href: url, text: question.slice(0, 80) })));
            }
          } else if (name === "error") {
            throw new Error(data.message);
          }
        });
      }
      form.elements.question.value = "";
    } catch (error) {
      problem.hidden = false;
      problem.textContent = error.message;
    } finally {
      answer.message.removeAttribute("aria-busy");
      button.disabled = false;
    }
  });
}

// The guarded SQL box: validate shows the rewritten SQL or the refusal, execute the capped result.
function bindSql() {
  const form = document.querySelector("[data-sql]");
  if (!form) return;
  const result = form.querySelector("[data-sql-result]");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const action = event.submitter ? event.submitter.value : "validate";
    result.textContent = "";
    try {
      const data = await callApi("POST", `/api/v1/query/${action}`, { sql: form.elements.sql.value });
      if (action === "validate") {
        result.append(data.allowed
          ? el("p", {}, "Allowed, as it would run: ", el("code", { "data-sql-text": "", text: data.sql }))
          : el("p", { class: "error", role: "alert", text: `Refused: ${data.reason}` }));
      } else {
        result.append(el("p", { class: "muted", text: `${data.row_count} rows${data.truncated ? " (capped)" : ""} in ${data.seconds} s: ${data.sql}` }));
        result.append(resultTable(data.columns, data.rows));
      }
    } catch (error) {
      result.append(el("p", { class: "error", role: "alert", text: error.message }));
    }
  });
}

// The dataset-spec editor: Check lists each problem with its line (a click selects that line), Dry run
// shows the cleaning steps, the expectations and the first cleaned rows, Save writes the spec to the
// watched raw prefix. All three call /api/v1/dataset-specs.
function selectLine(textarea, line) {
  const lines = textarea.value.split("\n");
  const start = lines.slice(0, line - 1).reduce((sum, text) => sum + text.length + 1, 0);
  textarea.focus();
  textarea.setSelectionRange(start, start + (lines[line - 1] || "").length);
}

function showSpecProblems(box, textarea, problems) {
  box.textContent = "";
  if (!problems.length) return;
  const list = el("ul", { class: "plain", "data-problem-list": "" });
  for (const problem of problems) {
    const where = [problem.line ? `line ${problem.line}` : "", problem.field || ""].filter(Boolean).join(", ");
    const item = el("li", { class: "error", "data-problem": "" });
    if (problem.line) {
      const jump = el("button", { type: "button", class: "link", "data-line": String(problem.line), text: where });
      jump.addEventListener("click", () => selectLine(textarea, problem.line));
      item.append(jump, `: ${problem.reason}`);
    } else {
      item.append(where ? `${where}: ${problem.reason}` : problem.reason);
    }
    list.append(item);
  }
  box.append(el("p", { class: "error", role: "alert", text: `${problems.length} problem(s) in the spec:` }), list);
}

function showDryRun(section, data) {
  const body = section.querySelector("[data-dry-run-body]");
  body.textContent = "";
  body.append(el("p", { "data-dry-run-summary": "", text:
    `${data.rows_read} rows of ${data.source_uri} cleaned to ${data.rows_out}; ` +
    (data.success ? "every expectation held." : "some expectations failed.") }));
  body.append(el("h3", { text: "Cleaning steps" }));
  body.append(resultTable(["step", "column(s)", "changed", "nulled", "unparseable", "rows dropped", "examples"],
    data.cleaning.map((step) => [step.rule, (step.columns || []).join(", "), step.changed, step.nulled,
      step.unparseable, step.rows_dropped, (step.examples || []).join(" · ")])));
  body.append(el("h3", { text: "Expectations" }));
  body.append(resultTable(["expectation", "column", "result", "failing rows", "observed"],
    data.expectations.map((e) => [e.expectation, e.column || "", e.success ? "pass" : "fail",
      e.unexpected_count === null ? "" : e.unexpected_count,
      e.observed === null || e.observed === undefined ? "" : JSON.stringify(e.observed)])));
  body.append(el("h3", { text: `First ${data.preview.length} cleaned rows` }));
  body.append(resultTable(data.columns, data.preview));
  section.hidden = false;
}

function bindSpecEditor() {
  const form = document.querySelector("[data-spec-editor]");
  if (!form) return;
  const textarea = form.elements.spec;
  const box = form.querySelector("[data-spec-problems]");
  const dry = document.querySelector("[data-dry-run]");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const action = event.submitter ? event.submitter.value : "validate";
    const spec = textarea.value;
    box.textContent = "";
    try {
      const check = await callApi("POST", "/api/v1/dataset-specs/validate", { spec });
      if (!check.valid) {
        showSpecProblems(box, textarea, check.problems);
        return;
      }
      if (action === "validate") {
        box.append(el("p", { role: "status", "data-spec-ok": "", text: `The spec of ${check.dataset} is valid.` }));
      } else if (action === "dry-run") {
        showDryRun(dry, await callApi("POST", "/api/v1/dataset-specs/dry-run", { spec }));
      } else {
        const saved = await callApi("PUT", `/api/v1/dataset-specs/${encodeURIComponent(check.dataset)}`, { spec });
        box.append(el("p", { role: "status", "data-spec-saved": "", text: saved.changed
          ? `Saved as ${saved.uri}: the watcher prepares ${saved.dataset} when it next looks.`
          : `Unchanged: ${saved.uri} already holds this text.` }));
      }
    } catch (error) {
      box.append(el("p", { class: "error", role: "alert", text: error.message }));
    }
  });
}

// Run forms of the pipelines page, generated from a deployment's parameter schema: each input says its
// kind (boolean, integer, number, string, json); an empty optional input is left to the deployment.
function bindRunForms() {
  for (const form of document.querySelectorAll("[data-run-form]")) {
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const problem = form.querySelector("[data-form-error]");
      const started = form.querySelector("[data-run-started]");
      problem.hidden = true;
      started.textContent = "";
      const parameters = {};
      try {
        for (const input of form.querySelectorAll("[data-kind]")) {
          const kind = input.dataset.kind;
          if (kind === "boolean") { parameters[input.name] = input.checked; continue; }
          const text = input.value.trim();
          if (text === "") continue;
          if (kind === "integer") parameters[input.name] = parseInt(text, 10);
          else if (kind === "number") parameters[input.name] = parseFloat(text);
          else if (kind === "json") {
            try { parameters[input.name] = JSON.parse(text); }
            catch (_) { throw new Error(`${input.name}: not valid JSON`); }
          } else parameters[input.name] = text;
        }
        const run = await callApi("POST", form.dataset.runForm, { parameters });
        started.textContent = `Flow run ${run.flow_run_id} of ${run.deployment} created; a worker of its pool runs it.`;
      } catch (error) {
        problem.hidden = false;
        problem.textContent = error.message;
      }
    });
  }
}

document.addEventListener("DOMContentLoaded", () => {
  bindActions();
  bindJsonForms();
  bindUploads();
  bindSync();
  bindChat();
  bindSql();
  bindSpecEditor();
  bindRunForms();
  document.documentElement.dataset.ready = "";  // console.css lets the bound controls take clicks now
});
