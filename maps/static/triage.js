/* The operators' triage page: the unrouted queue (agency=none) or the catch-all queue
   (agency=catch_all), filtered by category and date, listed and on the map. For the chosen
   ticket, each triage move is first previewed (dry_run: the server runs it and rolls it back)
   and only then confirmed. Live: any change on the ticket feed reloads the list. */
"use strict";

window.IocTriage = (function () {
  const C = window.IocCommon;
  const MOVE_NAMES = {
    recategorise: "Đổi lĩnh vực", move_pin: "Dời vị trí", merge: "Gộp vào phiếu khác",
    split: "Tách phản ánh", spam: "Tin rác", not_actionable: "Không xử lý được",
  };
  const HISTORY_NAMES = Object.assign({
    open: "Tiếp nhận", attach_report: "Gộp phản ánh trùng", merge_in: "Nhận phiếu gộp",
    split_from: "Tách từ phiếu khác", transfer: "Chuyển đơn vị", reject: "Từ chối",
    assign: "Phân công", start: "Bắt đầu xử lý", resolve: "Hoàn thành",
  }, MOVE_NAMES);

  let config = null;
  let map = null;
  let cluster = null;
  let queue = "none";
  let selected = null;
  let offset = 0;
  const tickets = new Map(); // id → {t, marker}

  const now = () => Date.now() + offset;
  const agencyName = (code) => code ? `${config.agencies[code] || code} (${code})` : "chưa định tuyến";
  const categoryName = (code) => config.categories[code] || code;

  function params() {
    const query = new URLSearchParams({ agency: queue, limit: "500" });
    for (const state of config.openStates) query.append("state", state);
    const filters = document.getElementById("filters");
    if (filters.category.value) query.set("category", filters.category.value);
    if (filters.since.value) query.set("since", filters.since.value);
    return query;
  }

  async function reload() {
    const page = await C.request(`/v1/tickets?${params()}`, config.page);
    const seen = new Set();
    for (const t of page.tickets) {
      seen.add(t.id);
      const held = tickets.get(t.id);
      if (held) {
        held.t = t;
        held.marker.setLatLng([t.lat, t.lon]);
      } else {
        const marker = L.circleMarker([t.lat, t.lon], {
          radius: 7, color: "#fff", weight: 1.5, fillColor: "#7c3aed", fillOpacity: 0.95,
        });
        marker.on("click", () => select(t.id));
        cluster.addLayer(marker);
        tickets.set(t.id, { t, marker });
      }
    }
    for (const [id, held] of [...tickets]) {
      if (!seen.has(id)) { cluster.removeLayer(held.marker); tickets.delete(id); }
    }
    draw();
    document.body.dataset.loaded = "true";
  }

  function draw() {
    const rows = [...tickets.values()].sort((a, b) => a.t.id - b.t.id).map(({ t }) =>
      `<tr data-ticket="${t.id}" class="${selected === t.id ? "selected" : ""}">
        <td>#${t.id}</td><td>${C.dateTimeText(C.millis(t.opened_at))}</td>
        <td>${C.escape(categoryName(t.category))}</td>
        <td>${C.escape(C.STATE_NAMES[t.state] || t.state)}</td><td>${t.report_count}</td></tr>`);
    document.querySelector("#queue tbody").innerHTML = rows.join("");
    document.getElementById("queue-empty").hidden = rows.length > 0;
    document.getElementById("stat-count").textContent = String(rows.length);
  }

  function historyList(events) {
    return events.map((e) => {
      const agency = e.from_agency !== e.to_agency
        ? ` · ${C.escape(agencyName(e.from_agency))} → ${C.escape(agencyName(e.to_agency))}` : "";
      return `<li data-event="${e.id}" data-action="${C.escape(e.action)}">
        <time>${C.dateTimeText(C.millis(e.at))}</time>
        <b>${C.escape(HISTORY_NAMES[e.action] || e.action)}</b> ·
        ${C.escape(C.STATE_NAMES[e.to_state] || e.to_state)}${agency}
        <span class="actor">${C.escape(e.actor)}</span>
        ${e.note ? `<div class="note">${C.escape(e.note)}</div>` : ""}</li>`;
    }).join("");
  }

  function moveForms(t, reports) {
    const allowed = (name) => (config.moves[name] || []).includes(t.state);
    const categories = Object.entries(config.categories)
      .filter(([code]) => code !== t.category)
      .map(([code, name]) => `<option value="${C.escape(code)}">${C.escape(name)}</option>`).join("");
    const others = reports.filter((r) => !r.opened_ticket)
      .map((r) => `<option value="${r.id}">#${r.id} · ${C.escape(r.description.slice(0, 60))}</option>`)
      .join("");
    const reason = '<input name="reason" placeholder="Lý do" required>';
    const fields = {
      recategorise: `<select name="category">${categories}</select>`,
      move_pin: `<input name="lon" type="number" step="any" placeholder="Kinh độ" value="${t.lon}">
        <input name="lat" type="number" step="any" placeholder="Vĩ độ" value="${t.lat}">`,
      merge: '<input name="into" type="number" min="1" placeholder="Gộp vào phiếu số">',
      split: others ? `<select name="report">${others}</select>` : "",
      spam: "", not_actionable: "",
    };
    return Object.keys(MOVE_NAMES).filter((name) => name !== "split" || others).map((name) =>
      `<form data-move="${name}" ${allowed(name) ? "" : 'class="unavailable"'}>
        <b>${MOVE_NAMES[name]}</b>${fields[name]}${reason}
        <button type="button" data-step="preview" ${allowed(name) ? "" : "disabled"}>Xem trước</button>
        <button type="button" data-step="confirm" disabled>Xác nhận</button>
        <p class="preview" role="status"></p></form>`).join("");
  }

  async function select(id) {
    selected = id;
    draw();
    const panel = document.getElementById("detail");
    const [t, history, reports] = await Promise.all([
      C.request(`/v1/tickets/${id}`, config.page),
      C.request(`/v1/tickets/${id}/history`, config.page),
      C.request(`/v1/tickets/${id}/reports`, config.page),
    ]);
    if (selected !== id) return;
    panel.innerHTML = `<h2>Phiếu #${t.id} · ${C.escape(categoryName(t.category))}</h2>
      <p class="summary">${C.escape(C.STATE_NAMES[t.state] || t.state)} ·
        ${C.escape(agencyName(t.agency))} · hạn ${C.dateTimeText(C.millis(t.deadline_at))}
        (${C.escape(C.deadlineText(C.millis(t.deadline_at), now()))})</p>
      <p class="description">${C.escape(t.description)}</p>
      <p class="address">${C.escape(t.address || "")} · ${t.report_count} phản ánh</p>
      <div class="moves">${moveForms(t, reports.reports)}</div>
      <p class="error" id="action-error" role="alert"></p>
      <h3>Lịch sử xử lý</h3><ol class="history" id="history">${historyList(history.events)}</ol>`;
    panel.dataset.ticket = String(t.id);
    panel.dataset.state = t.state;
    for (const form of panel.querySelectorAll("form[data-move]")) {
      form.addEventListener("input", () => { form.querySelector("[data-step=confirm]").disabled = true; });
      for (const button of form.querySelectorAll("button[data-step]")) {
        button.addEventListener("click", () => send(t.id, form, button.dataset.step === "preview"));
      }
    }
    const held = tickets.get(id);
    if (held) map.panTo(held.marker.getLatLng());
  }

  function bodyOf(form, dryRun) {
    const body = { action: form.dataset.move, dry_run: dryRun };
    for (const field of form.querySelectorAll("input, select")) {
      if (field.value === "") continue;
      body[field.name] = field.type === "number" || field.name === "report" ? Number(field.value) : field.value;
    }
    return body;
  }

  function previewText(outcome) {
    const t = outcome.ticket;
    const other = outcome.other;
    const name = MOVE_NAMES[outcome.action];
    if (outcome.action === "merge") {
      return `${name}: phiếu #${t.id} đóng lại; phiếu #${other.id} sẽ có ${other.report_count} phản ánh.`;
    }
    if (outcome.action === "split") {
      return `${name}: phản ánh thành phiếu #${other.id} · ${agencyName(other.agency)}; phiếu #${t.id} còn ${t.report_count} phản ánh.`;
    }
    if (outcome.action === "spam" || outcome.action === "not_actionable") {
      return `${name}: phiếu #${t.id} sẽ bị từ chối.`;
    }
    return `${name}: phiếu #${t.id} · ${categoryName(t.category)} → ${agencyName(t.agency)}` +
      `, hạn ${C.dateTimeText(C.millis(t.deadline_at))}.`;
  }

  async function send(id, form, dryRun) {
    const error = document.getElementById("action-error");
    const shown = form.querySelector(".preview");
    const confirm = form.querySelector("[data-step=confirm]");
    error.textContent = "";
    try {
      const outcome = await C.request(`/v1/tickets/${id}/triage`, config.page, {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify(bodyOf(form, dryRun)),
      });
      if (dryRun) {
        shown.textContent = "Xem trước — " + previewText(outcome);
        form.dataset.previewed = "true";
        confirm.disabled = false;
        return;
      }
      await reload();
      await select(id);
      document.getElementById("action-error").textContent = "";
      const panel = document.getElementById("detail");
      panel.dataset.done = outcome.action;
      panel.insertAdjacentHTML("afterbegin",
        `<p class="done" id="done">Đã thực hiện — ${C.escape(previewText(outcome))}</p>`);
    } catch (problem) {
      error.textContent = problem.message;
      confirm.disabled = true;
    }
  }

  let pending = null;
  function soon() {
    if (pending) return;
    pending = setTimeout(() => { pending = null; reload().catch(console.warn); }, 300);
  }

  function start(given) {
    config = given;
    offset = config.serverTime - Date.now();
    map = window[config.map];
    cluster = window[config.tickets];
    document.getElementById("tabs").addEventListener("click", (event) => {
      const button = event.target.closest("button[data-queue]");
      if (!button) return;
      queue = button.dataset.queue;
      for (const b of document.querySelectorAll("#tabs button")) b.classList.toggle("chosen", b === button);
      document.body.dataset.loaded = "false";
      reload().catch(console.warn);
    });
    document.getElementById("filters").addEventListener("submit", (event) => {
      event.preventDefault();
      document.body.dataset.loaded = "false";
      reload().catch(console.warn);
    });
    document.querySelector("#queue tbody").addEventListener("click", (event) => {
      const row = event.target.closest("tr[data-ticket]");
      if (row) select(Number(row.dataset.ticket));
    });
    map.on("click", (event) => {  // a click on the map fills the pin's new place
      const form = document.querySelector('#detail form[data-move="move_pin"]');
      if (!form) return;
      form.lon.value = event.latlng.lng.toFixed(6);
      form.lat.value = event.latlng.lat.toFixed(6);
      form.querySelector("[data-step=confirm]").disabled = true;
    });
    const status = document.getElementById("live");
    C.liveSocket("/v1/tickets/ws", config.page, {
      open() { C.setLive(status, "live"); reload().catch(console.warn); },
      message(message) { if (message.ticket != null || message.resync) soon(); },
      closed() { C.setLive(status, "offline"); },
    });
    reload().catch(console.warn);
  }

  return { start };
})();
