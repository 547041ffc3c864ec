/* An agency's console: its open tickets by deadline (overdue first), their map, the selected
   ticket's history and actions. Everything goes through the ticket API with the login
   cookie, so the page can do exactly what the key may. Live: the ticket feed names changed
   tickets, which the page reads again; after a reconnect it reloads the whole queue. */
"use strict";

window.IocConsole = (function () {
  const C = window.IocCommon;
  const ACTION_NAMES = {
    assign: "Phân công", start: "Bắt đầu xử lý", wait: "Chờ bổ sung", resume: "Tiếp tục xử lý",
    resolve: "Hoàn thành", transfer: "Chuyển đơn vị",
  };
  const HISTORY_NAMES = Object.assign({ open: "Tiếp nhận", attach_report: "Gộp phản ánh trùng",
    close: "Đóng", reopen: "Mở lại", reject: "Từ chối", recategorise: "Đổi lĩnh vực",
    move_pin: "Dời vị trí", merge: "Gộp vào phiếu khác", merge_in: "Nhận phiếu gộp",
    split: "Tách phản ánh", split_from: "Tách từ phiếu khác", spam: "Tin rác",
    not_actionable: "Không xử lý được" }, ACTION_NAMES);

  let config = null;
  let map = null;
  let cluster = null;
  let open = null;
  let offset = 0;
  let selected = null;
  let fitted = false;
  const tickets = new Map(); // id → {t, marker, state}

  const now = () => Date.now() + offset;

  const clusterIcon = (group) => C.clusterIcon(group, [36, 36]);

  /* The API's ticket (ISO times) in the shape the deadline rule reads (ms). */
  function shaped(api) {
    return Object.assign({}, api, {
      opened_at: C.millis(api.opened_at), deadline_at: C.millis(api.deadline_at),
      due_soon_at: C.millis(api.due_soon_at), paused_at: C.millis(api.paused_at),
    });
  }

  function mine(t) {
    return t.agency === config.agency && open.has(t.state);
  }

  function upsert(api) {
    const t = shaped(api);
    const held = tickets.get(t.id);
    if (!mine(t)) {
      if (held) remove(t.id);
      return;
    }
    const state = C.deadlineState(t, now(), config.dueSoonFraction);
    if (!held) {
      const marker = L.circleMarker([t.lat, t.lon], {
        radius: 7, color: "#fff", weight: 1.5, fillColor: C.COLOURS[state], fillOpacity: 0.95,
        iocState: state,
      });
      marker.on("click", () => select(t.id));
      cluster.addLayer(marker);
      tickets.set(t.id, { t, marker, state });
    } else {
      held.t = t;
      held.state = state;
      held.marker.setLatLng([t.lat, t.lon]);
      held.marker.options.iocState = state;
      held.marker.setStyle({ fillColor: C.COLOURS[state] });
      cluster.refreshClusters(held.marker);
    }
  }

  function remove(id) {
    const held = tickets.get(id);
    if (!held) return;
    cluster.removeLayer(held.marker);
    tickets.delete(id);
  }

  /* The official's own tickets first; then deadline ascending (overdue first), no deadline
     last, then by id. */
  function ordered() {
    const own = (t) => (config.me && t.assignee === config.me ? 0 : 1);
    return [...tickets.values()].sort((a, b) => {
      if (own(a.t) !== own(b.t)) return own(a.t) - own(b.t);
      const da = a.t.deadline_at;
      const db = b.t.deadline_at;
      if (da == null && db != null) return 1;
      if (db == null && da != null) return -1;
      return (da || 0) - (db || 0) || a.t.id - b.t.id;
    });
  }

  function officialName(login) {
    if (!login) return "—";
    const found = config.officials.find(([l]) => l === login);
    return found ? found[1] : login;
  }

  function drawQueue() {
    const at = now();
    let overdue = 0;
    let dueSoon = 0;
    const rows = ordered().map(({ t, state }) => {
      if (state === "overdue") overdue += 1;
      if (state === "due_soon") dueSoon += 1;
      const chosen = (selected === t.id ? " selected" : "") + (config.me && t.assignee === config.me ? " mine" : "");
      return `<tr class="${state}${chosen}" data-ticket="${t.id}" data-state="${t.state}">
        <td><span class="deadline">${C.escape(C.deadlineText(t.deadline_at, at))}</span>
            <small>${C.dateTimeText(t.deadline_at)}</small></td>
        <td>#${t.id}</td>
        <td>${C.escape(config.categories[t.category] || t.category)}</td>
        <td>${C.escape(C.STATE_NAMES[t.state] || t.state)}</td>
        <td>${C.escape(officialName(t.assignee))}</td>
        <td>${t.report_count}</td></tr>`;
    });
    document.querySelector("#queue tbody").innerHTML = rows.join("");
    document.getElementById("queue-empty").hidden = rows.length > 0;
    document.getElementById("stat-open").textContent = String(tickets.size);
    document.getElementById("stat-due-soon").textContent = String(dueSoon);
    document.getElementById("stat-overdue").textContent = String(overdue);
  }

  function retime() {
    const at = now();
    for (const held of tickets.values()) {
      const state = C.deadlineState(held.t, at, config.dueSoonFraction);
      if (state !== held.state) {
        held.state = state;
        held.marker.options.iocState = state;
        held.marker.setStyle({ fillColor: C.COLOURS[state] });
        cluster.refreshClusters(held.marker);
      }
    }
    drawQueue();
  }

  /* --- the selected ticket ------------------------------------------------------------- */

  function actionForms(t) {
    const allowed = (name) => (config.moves[name] || []).includes(t.state);
    const others = Object.entries(config.agencies)
      .filter(([code]) => code !== config.agency)
      .map(([code, name]) => `<option value="${C.escape(code)}">${C.escape(name)} (${C.escape(code)})</option>`)
      .join("");
    const people = config.officials
      .map(([login, name]) => `<option value="${C.escape(login)}"${login === t.assignee ? " selected" : ""}>${C.escape(name)} (${C.escape(login)})</option>`)
      .join("");
    const button = (name) =>
      `<button type="submit" data-action="${name}" ${allowed(name) ? "" : "disabled"}>${ACTION_NAMES[name]}</button>`;
    return `<div class="actions">
      <form data-action="assign"><select name="assignee" required>${people}</select>${button("assign")}</form>
      <form data-action="start">${button("start")}</form>
      <form data-action="resume">${button("resume")}</form>
      <form data-action="wait"><input name="reason" placeholder="Lý do chờ" required>${button("wait")}</form>
      <form data-action="resolve">${button("resolve")}</form>
      <form data-action="transfer"><select name="to_agency" required>${others}</select>
        <input name="reason" placeholder="Lý do chuyển" required>${button("transfer")}</form>
      <p class="error" id="action-error" role="alert"></p>
    </div>`;
  }

  function historyList(events) {
    return events.map((e) => {
      const move = e.from_state && e.from_state !== e.to_state
        ? `${C.STATE_NAMES[e.from_state] || e.from_state} → ${C.STATE_NAMES[e.to_state] || e.to_state}`
        : (C.STATE_NAMES[e.to_state] || e.to_state);
      const agency = e.to_agency && e.from_agency && e.to_agency !== e.from_agency
        ? ` · ${C.escape(e.from_agency)} → ${C.escape(e.to_agency)}` : "";
      return `<li data-event="${e.id}" data-action="${C.escape(e.action)}">
        <time>${C.dateTimeText(C.millis(e.at))}</time>
        <b>${C.escape(HISTORY_NAMES[e.action] || e.action)}</b> · ${C.escape(move)}${agency}
        <span class="actor">${C.escape(e.actor)}</span>
        ${e.note ? `<div class="note">${C.escape(e.note)}</div>` : ""}</li>`;
    }).join("");
  }

  /* The report's photos as previews; a click shows the whole photo over the page. */
  function photoList(media) {
    if (!media || !media.length) return "";
    return `<h3>Ảnh hiện trường</h3><ul class="photos" id="photos">${media.map((m) =>
      `<li><a href="${C.escape(m.url)}" data-media="${C.escape(m.id)}" target="_blank" rel="noopener">
        <img src="${C.escape(m.preview_url)}" alt="Ảnh phản ánh" loading="lazy"></a></li>`).join("")}</ul>`;
  }

  function showPhoto(url) {
    let shown = document.getElementById("photo-view");
    if (!shown) {
      shown = document.createElement("dialog");
      shown.id = "photo-view";
      shown.innerHTML = '<img alt="Ảnh phản ánh">';
      shown.addEventListener("click", () => shown.close());
      document.body.appendChild(shown);
    }
    shown.querySelector("img").src = url;
    shown.showModal();
  }

  async function select(id) {
    selected = id;
    drawQueue();
    const panel = document.getElementById("detail");
    try {
      const [api, history] = await Promise.all([
        C.request(`/v1/tickets/${id}`, config.page),
        C.request(`/v1/tickets/${id}/history`, config.page),
      ]);
      if (selected !== id) return;
      const t = shaped(api);
      const state = C.deadlineState(t, now(), config.dueSoonFraction);
      // A live update re-draws the ticket: keep what the user was typing into its forms.
      const typed = new Map();
      if (panel.dataset.ticket === String(t.id)) {
        for (const field of panel.querySelectorAll("form[data-action] input, form[data-action] select")) {
          if (field.value) typed.set(`${field.form.dataset.action}/${field.name}`, field.value);
        }
      }
      panel.innerHTML = `<h2>Phiếu #${t.id} · ${C.escape(config.categories[t.category] || t.category)}</h2>
        <p class="summary"><span class="badge ${state}">${C.DEADLINE_NAMES[state]}</span>
          ${C.escape(C.STATE_NAMES[t.state] || t.state)} · hạn ${C.dateTimeText(t.deadline_at)}
          (${C.escape(C.deadlineText(t.deadline_at, now()))})</p>
        <p class="description">${C.escape(t.description)}</p>
        <p class="address">${C.escape(t.address || "")}</p>
        ${photoList(t.media)}
        ${actionForms(t)}
        <h3>Lịch sử xử lý</h3><ol class="history" id="history">${historyList(history.events)}</ol>`;
      for (const field of panel.querySelectorAll("form[data-action] input, form[data-action] select")) {
        const value = typed.get(`${field.form.dataset.action}/${field.name}`);
        if (value !== undefined) field.value = value;
      }
      panel.dataset.ticket = String(t.id);
      panel.dataset.state = t.state;
      for (const link of panel.querySelectorAll("#photos a")) {
        link.addEventListener("click", (event) => {
          event.preventDefault();
          showPhoto(link.href);
        });
      }
      for (const form of panel.querySelectorAll("form[data-action]")) {
        form.addEventListener("submit", (event) => {
          event.preventDefault();
          act(t.id, form);
        });
      }
      const held = tickets.get(id);
      if (held) map.panTo(held.marker.getLatLng());
    } catch (error) {
      if (error.status === 404) {
        remove(id);
        drawQueue();
        panel.innerHTML = '<p class="empty">Phiếu này không còn trong hàng đợi của đơn vị.</p>';
        delete panel.dataset.ticket;
      }
    }
  }

  async function act(id, form) {
    const body = { action: form.dataset.action };
    for (const field of form.querySelectorAll("input, select")) body[field.name] = field.value;
    const error = document.getElementById("action-error");
    error.textContent = "";
    for (const b of form.querySelectorAll("button")) b.disabled = true;
    try {
      const updated = await C.request(`/v1/tickets/${id}/actions`, config.page, {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify(body),
      });
      form.reset();  // done: what was typed into it is not carried into the next view
      upsert(updated);
      drawQueue();
      if (tickets.has(id)) {
        await select(id);
      } else {
        const panel = document.getElementById("detail");
        panel.innerHTML = `<p class="done">Phiếu #${id}: ${C.escape(ACTION_NAMES[body.action])} — đã xong;
          phiếu đã rời hàng đợi của đơn vị.</p>`;
        panel.dataset.state = updated.state;
        selected = null;
      }
    } catch (problem) {
      error.textContent = problem.message;
      for (const b of form.querySelectorAll("button")) b.disabled = false;
    }
  }

  /* --- loading and live ------------------------------------------------------------------ */

  async function reload() {
    const params = new URLSearchParams({ agency: config.agency, limit: "500" });
    for (const state of config.openStates) params.append("state", state);
    const seen = new Set();
    let next = null;
    do {
      if (next) params.set("cursor", next);
      const page = await C.request(`/v1/tickets?${params}`, config.page);
      for (const api of page.tickets) { upsert(api); seen.add(api.id); }
      next = page.next;
    } while (next);
    for (const id of [...tickets.keys()]) if (!seen.has(id)) remove(id);
    drawQueue();
    if (!fitted && tickets.size) {
      fitted = true;
      map.fitBounds(cluster.getBounds(), { maxZoom: 15, padding: [20, 20] });
    }
    document.body.dataset.loaded = "true";
  }

  const refetching = new Set();
  async function refetch(id) {
    if (refetching.has(id)) return;
    refetching.add(id);
    try {
      upsert(await C.request(`/v1/tickets/${id}`, config.page));
    } catch (error) {
      if (error.status === 404) remove(id);
    } finally {
      refetching.delete(id);
    }
    drawQueue();
    const panel = document.getElementById("detail");
    if (selected === id && panel.dataset.ticket === String(id)) {
      if (tickets.has(id)) select(id);
    }
  }

  function onMessage(message) {
    if (message.resync) { reload(); return; }
    if (message.ticket == null) return;
    if (message.from_agency === config.agency || (message.agency !== config.agency)) {
      remove(message.ticket);
      drawQueue();
      return;
    }
    refetch(message.ticket);
  }

  async function start(given) {
    config = given;
    offset = config.serverTime - Date.now();
    open = new Set(config.openStates);
    map = window[config.map];
    cluster = window[config.tickets];
    const status = document.getElementById("live");
    document.querySelector("#queue tbody").addEventListener("click", (event) => {
      const row = event.target.closest("tr[data-ticket]");
      if (row) select(Number(row.dataset.ticket));
    });
    let opened = false;
    C.liveSocket("/v1/tickets/ws", config.page, {
      // (Re)connected: read the whole queue again, so nothing changed while away is missed.
      open() { opened = true; C.setLive(status, "live"); reload().catch(console.warn); },
      message: onMessage,
      closed() {
        C.setLive(status, "offline");
        if (!opened) { opened = true; reload().catch(console.warn); }
      },
    });
    setInterval(retime, 15000);
  }

  return {
    start, clusterIcon,
    ticket: (id) => { const held = tickets.get(id); return held ? Object.assign({ deadline: held.state }, held.t) : null; },
    get openCount() { return tickets.size; },
  };
})();
