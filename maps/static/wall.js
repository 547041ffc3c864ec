/* The wall map: draws the snapshot, applies the live feed, and catches up after a drop.

   Every ticket row carries a version (its latest history entry); a row older than the one
   held is ignored, and a ticket that left the map remembers the version it left with, so
   rows arriving late or twice (the feed and a catch-up overlap on purpose) change nothing.

   The feed resumes by number: the snapshot gives the live log's `seq`, every message raises
   it, and each (re)connect asks for `?after=<seq>`, so the server replays just what was
   missed. A `resync` (the page was away longer than the log keeps) reloads the snapshot;
   messages that arrive while a snapshot loads are held and those newer than it applied after. */
"use strict";

window.IocWall = (function () {
  const C = window.IocCommon;
  const OPEN = new Set(["new", "assigned", "in_progress", "waiting", "reopened"]);
  const SEVERITY_ORDER = { critical: 0, warning: 1, info: 2 };
  const RECENT_SHOWN = 8;

  let config = null;
  let map = null;
  let cluster = null;
  let sensorLayer = null;
  let areaLayer = null;
  let offset = 0; // server time − browser time (ms)
  let cursor = null;
  let seq = null; // the last live notice drawn (null: none yet, the feed starts live)
  let loading = null; // messages held while a snapshot loads
  let live = false;
  let catchingUp = null;
  const tickets = new Map(); // id → {t, marker, state}
  const gone = new Map(); // id → version it left the map with
  const alerts = new Map(); // id → alert
  const sensors = new Map(); // id → {s, marker}
  const recent = []; // newest ticket ids first

  const now = () => Date.now() + offset;
  // The boards beside the map (wall_panels.js) see what the map sees.
  const panels = (kind, value) => window.IocWallPanels && window.IocWallPanels.update(kind, value);

  /* --- tickets ---------------------------------------------------------------------- */

  const clusterIcon = (group) => C.clusterIcon(group, [40, 58]);

  function ticketPopup(t, state) {
    const category = config.categories[t.category] || t.category;
    const agency = t.agency ? (config.agencies[t.agency] || t.agency) : "Chưa phân đơn vị";
    const link = t.agency
      ? `<a href="/agencies/${encodeURIComponent(t.agency)}">Mở bàn làm việc của đơn vị</a>` : "";
    return `<div class="ioc-popup"><b>Phiếu #${t.id}</b> · ${C.escape(category)}<br>
      ${C.escape(C.STATE_NAMES[t.state] || t.state)} · ${C.escape(agency)}<br>
      <span class="${state}">${C.DEADLINE_NAMES[state]}</span>:
      ${C.escape(C.deadlineText(t.deadline_at, now()))} (${C.dateTimeText(t.deadline_at)})<br>
      ${t.reports} phản ánh · mở lúc ${C.dateTimeText(t.opened_at)}<br>${link}</div>`;
  }

  function newMarker(t, state) {
    const kiosk = document.body.classList.contains("kiosk");
    const marker = L.circleMarker([t.lat, t.lon], {
      radius: kiosk ? 9 : 7, color: "#ffffff", weight: 1.5,
      fillColor: C.COLOURS[state], fillOpacity: 0.95, iocState: state, iocTicket: t.id,
    });
    if (!kiosk) {
      const content = () => {
        const held = tickets.get(t.id);
        return held ? ticketPopup(held.t, held.state) : "";
      };
      marker.bindPopup(content);
      if (config.photos) {
        marker.on("popupopen", (event) => addPhotos(t.id, event.popup, content));
        marker.on("popupclose", (event) => event.popup.setContent(content));
      }
    }
    return marker;
  }

  /* Only with IOC_MEDIA_ON_WALL: an opened ticket's popup gains its photos' previews, read from
     the ticket API (the wall's snapshot and feed never carry photos). */
  async function addPhotos(id, popup, content) {
    let media = [];
    try {
      media = (await C.request(`/v1/tickets/${id}`, config.page)).media || [];
    } catch (error) {
      return;
    }
    if (!media.length || !popup.isOpen()) return;
    const previews = media.slice(0, 4).map((m) =>
      `<a href="${C.escape(m.url)}" target="_blank" rel="noopener">
        <img src="${C.escape(m.preview_url)}" alt="Ảnh phản ánh"></a>`).join("");
    popup.setContent(`${content()}<div class="ioc-photos">${previews}</div>`);
  }

  /* Apply one ticket row; new markers are returned for one bulk add. */
  function upsert(t, added) {
    const held = tickets.get(t.id);
    if (held && held.t.version > t.version) return false;
    const left = gone.get(t.id);
    if (!held && left !== undefined && left >= t.version) return false;
    if (!OPEN.has(t.state)) {
      if (held) {
        cluster.removeLayer(held.marker);
        tickets.delete(t.id);
      }
      gone.set(t.id, t.version);
      return true;
    }
    gone.delete(t.id);
    const state = C.deadlineState(t, now(), config.dueSoonFraction);
    if (!held) {
      const marker = newMarker(t, state);
      tickets.set(t.id, { t, marker, state });
      added.push(marker);
      return true;
    }
    const moved = held.t.lat !== t.lat || held.t.lon !== t.lon;
    held.t = t;
    if (moved) {
      cluster.removeLayer(held.marker);
      held.marker.setLatLng([t.lat, t.lon]);
      added.push(held.marker);
    }
    if (held.state !== state) restyle(held, state);
    return true;
  }

  function restyle(held, state) {
    held.state = state;
    held.marker.options.iocState = state;
    held.marker.setStyle({ fillColor: C.COLOURS[state] });
    if (cluster.hasLayer(held.marker)) cluster.refreshClusters(held.marker);
  }

  function applyTickets(rows, columns, noteRecent) {
    const added = [];
    for (const t of C.objects(columns, rows)) {
      if (upsert(t, added) && noteRecent && OPEN.has(t.state)) noteNew(t.id);
    }
    if (added.length) cluster.addLayers(added);
    panels("tickets", { rows, columns });
    refresh();
  }

  function noteNew(id) {
    const at = recent.indexOf(id);
    if (at >= 0) recent.splice(at, 1);
    recent.unshift(id);
    recent.length = Math.min(recent.length, RECENT_SHOWN);
  }

  /* Deadlines pass while nobody writes: states are recomputed every few seconds. */
  function retime() {
    const at = now();
    for (const held of tickets.values()) {
      const state = C.deadlineState(held.t, at, config.dueSoonFraction);
      if (state !== held.state) restyle(held, state);
    }
    refresh();
  }

  /* --- sensors and alerts ------------------------------------------------------------- */

  const sensorFlags = new Map(); // sensor id → "jam" | "silent", from active alerts

  function flagSensors() {
    sensorFlags.clear();
    for (const a of alerts.values()) {
      if (a.subject_kind !== "sensor") continue;
      const id = String(a.subject_id);
      if (a.rule === "congestion") sensorFlags.set(id, "jam");
      else if (a.rule === "silent" && !sensorFlags.has(id)) sensorFlags.set(id, "silent");
    }
  }

  function sensorAlert(id) {
    return sensorFlags.get(String(id)) || null;
  }

  /* Congestion: an active congestion alert (the sensor against its own baseline) first;
     otherwise the latest speed (≥ 40 km/h free, ≥ 20 slow, below that jammed); a sensor
     with no reading for three of its intervals is silent. */
  function sensorLevel(s) {
    const flagged = sensorAlert(s.id);
    if (flagged) return flagged;
    if (s.observed_at == null) return "silent";
    const interval = (s.interval_s || 300) * 1000;
    if (now() - s.observed_at > 3 * interval) return "silent";
    if (s.speed_kmh == null) return "free";
    if (s.speed_kmh >= 40) return "free";
    if (s.speed_kmh >= 20) return "slow";
    return "jam";
  }

  const SENSOR_COLOURS = { free: "#1b9e77", slow: "#e6ab02", jam: "#d7301f", silent: "#8c8c8c" };
  const SENSOR_NAMES = { free: "Thông thoáng", slow: "Chậm", jam: "Ùn tắc", silent: "Không có số liệu" };

  function sensorTip(s, level) {
    const speed = s.speed_kmh == null ? "—" : `${s.speed_kmh} km/h`;
    const count = s.vehicles == null ? "—" : `${s.vehicles} xe`;
    return `<b>${C.escape(s.name || s.id)}</b> (${C.escape(s.id)})<br>${SENSOR_NAMES[level]} ·
      ${speed} · ${count}<br>${s.observed_at ? C.dateTimeText(s.observed_at) : "chưa có số liệu"}`;
  }

  function drawSensor(s) {
    const level = sensorLevel(s);
    let held = sensors.get(s.id);
    if (!held) {
      const kiosk = document.body.classList.contains("kiosk");
      const marker = L.circleMarker([s.lat, s.lon], {
        radius: kiosk ? 10 : 8, color: "#222", weight: 2, fillOpacity: 0.9,
        fillColor: SENSOR_COLOURS[level], iocSensor: s.id,
      }).addTo(sensorLayer);
      held = { s, marker, level };
      sensors.set(s.id, held);
    }
    held.s = Object.assign(held.s, s);
    held.level = sensorLevel(held.s);
    held.marker.setStyle({ fillColor: SENSOR_COLOURS[held.level] });
    held.marker.bindTooltip(sensorTip(held.s, held.level));
  }

  function replaceSensors(rows, columns) {
    for (const s of C.objects(columns, rows)) drawSensor(s);
  }

  function applyReadings(readings) {
    let unknown = false;
    for (const [id, observed, vehicles, speed, interval] of readings) {
      const held = sensors.get(id);
      if (!held) { unknown = true; continue; }
      const at = C.millis(observed);
      if (held.s.observed_at != null && held.s.observed_at > at) continue;
      drawSensor({ id, observed_at: at, vehicles, speed_kmh: speed, interval_s: interval });
    }
    // A sensor registered after the page loaded: its place comes with the changes.
    if (unknown) catchUp();
  }

  function redrawSensors() {
    flagSensors();
    for (const held of sensors.values()) drawSensor(held.s);
  }

  function replaceAlerts(rows, columns) {
    alerts.clear();
    for (const a of C.objects(columns, rows)) alerts.set(a.id, a);
    redrawSensors();
    drawAlerts();
  }

  function applyAlerts(changed) {
    for (const a of changed) {
      if (a.status === "resolved") alerts.delete(a.id);
      else alerts.set(a.id, a);
    }
    redrawSensors();
    drawAlerts();
  }

  function drawAlerts() {
    const list = document.getElementById("alerts");
    const shown = document.body.classList.contains("kiosk") ? 10 : 30;
    const sorted = [...alerts.values()].sort((a, b) =>
      (SEVERITY_ORDER[a.severity] ?? 3) - (SEVERITY_ORDER[b.severity] ?? 3)
      || (b.raised_at || 0) - (a.raised_at || 0));
    document.getElementById("stat-alerts").textContent = String(alerts.size);
    panels("alerts", alerts);
    if (!sorted.length) {
      list.innerHTML = '<li class="empty">Không có cảnh báo</li>';
      return;
    }
    const at = now();
    list.innerHTML = sorted.slice(0, shown).map((a) => {
      const agency = a.agency ? (config.agencies[a.agency] || a.agency) : "Chưa phân đơn vị";
      const since = a.raised_at ? `${C.spanText(at - a.raised_at)} trước` : "";
      return `<li class="${C.escape(a.severity)}" data-alert="${C.escape(a.id)}">
        <span class="title">${C.escape(a.title)}</span>
        <span class="meta">${C.escape(agency)} · ${since}</span></li>`;
    }).join("");
  }

  /* --- areas, counters, recent ------------------------------------------------------- */

  function drawAreas(counts) {
    if (!areaLayer) return;
    areaLayer.eachLayer((layer) => {
      const code = layer.feature.properties.code;
      const c = counts.get(code) || { open: 0, overdue: 0 };
      let style = { color: "#33415c", weight: 1, fillColor: "#9fb3c8", fillOpacity: 0.08 };
      if (c.overdue > 0) {
        style = { color: "#7f1d1d", weight: 2, fillColor: "#c62828",
          fillOpacity: 0.2 + 0.45 * Math.min(c.overdue / 10, 1) };
      } else if (c.open > 0) {
        style = { color: "#33415c", weight: 1, fillColor: "#2b6cb0",
          fillOpacity: 0.1 + 0.35 * Math.min(c.open / 30, 1) };
      }
      layer.setStyle(style);
      layer.iocCounts = c;
      if (!layer.getTooltip()) {
        layer.bindTooltip(() => {
          const n = layer.iocCounts || { open: 0, overdue: 0 };
          return `<b>${C.escape(layer.feature.properties.name)}</b><br>${n.open} phiếu mở,
            ${n.overdue} quá hạn`;
        }, { sticky: true });
      }
    });
  }

  let refreshPending = false;
  function refresh() {
    if (refreshPending) return;
    refreshPending = true;
    window.requestAnimationFrame(() => {
      refreshPending = false;
      let dueSoon = 0;
      let overdue = 0;
      const counts = new Map();
      for (const held of tickets.values()) {
        if (held.state === "overdue") overdue += 1;
        else if (held.state === "due_soon") dueSoon += 1;
        const code = held.t.jurisdiction;
        if (code) {
          const c = counts.get(code) || { open: 0, overdue: 0 };
          c.open += 1;
          if (held.state === "overdue") c.overdue += 1;
          counts.set(code, c);
        }
      }
      document.getElementById("stat-open").textContent = tickets.size.toLocaleString("vi-VN");
      document.getElementById("stat-due-soon").textContent = dueSoon.toLocaleString("vi-VN");
      document.getElementById("stat-overdue").textContent = overdue.toLocaleString("vi-VN");
      drawAreas(counts);
      drawRecent();
    });
  }

  function drawRecent() {
    const list = document.getElementById("recent");
    list.innerHTML = recent.filter((id) => tickets.has(id)).map((id) => {
      const { t, state } = tickets.get(id);
      const agency = t.agency ? (config.agencies[t.agency] || t.agency) : "Chưa phân đơn vị";
      return `<li class="${state}" data-ticket="${t.id}"><span class="title">#${t.id} ·
        ${C.escape(config.categories[t.category] || t.category)}</span>
        <span class="meta">${C.escape(agency)} · ${C.clockText(t.opened_at, false)}</span></li>`;
    }).join("");
  }

  /* --- loading and catching up --------------------------------------------------------- */

  async function loadSnapshot() {
    loading = loading || [];
    let snap;
    try {
      snap = await C.request(config.snapshot, config.page);
    } catch (error) {
      const held = loading;
      loading = null;
      held.forEach(onMessage);
      throw error;
    }
    drawSnapshot(snap);
    const held = loading;
    loading = null;
    for (const message of held) if (message.seq == null || message.seq > snap.seq) onMessage(message);
  }

  function drawSnapshot(snap) {
    seq = snap.seq;
    document.body.dataset.snapshots = String(Number(document.body.dataset.snapshots || 0) + 1);
    offset = snap.server_time - Date.now();
    cluster.clearLayers();
    tickets.clear();
    gone.clear();
    recent.length = 0;
    const rows = C.objects(snap.ticket_columns, snap.tickets)
      .sort((a, b) => b.opened_at - a.opened_at);
    rows.slice(0, RECENT_SHOWN).reverse().forEach((t) => noteNew(t.id));
    applyTickets(snap.tickets, snap.ticket_columns, false);
    replaceSensors(snap.sensors, snap.sensor_columns);
    replaceAlerts(snap.alerts, snap.alert_columns);
    panels("snapshot", snap);
    cursor = snap.cursor;
    document.body.dataset.loaded = "true";
  }

  /* Everything since the cursor, then a newer cursor. One at a time. */
  function catchUp() {
    if (catchingUp) return catchingUp;
    catchingUp = (async () => {
      try {
        if (cursor == null) { await loadSnapshot(); return; }
        const url = `${config.changes}?since=${encodeURIComponent(cursor)}`;
        const changes = await C.request(url, config.page);
        if (changes.reload) { await loadSnapshot(); return; }
        offset = changes.server_time - Date.now();
        applyTickets(changes.tickets, changes.ticket_columns, true);
        replaceSensors(changes.sensors, changes.sensor_columns);
        replaceAlerts(changes.alerts, changes.alert_columns);
        panels("changes", changes);
        cursor = changes.cursor;
        document.body.dataset.catchUps = String(Number(document.body.dataset.catchUps || 0) + 1);
      } catch (error) {
        console.warn("wall: catching up failed", error);
      } finally {
        catchingUp = null;
      }
    })();
    return catchingUp;
  }

  function onMessage(message) {
    if (loading) { loading.push(message); return; }
    if (typeof message.seq === "number") seq = Math.max(seq || 0, message.seq);
    if (message.type === "tickets") {
      applyTickets(message.tickets, config.ticketColumns, true);
    } else if (message.type === "alerts") {
      applyAlerts(message.alerts);
    } else if (message.type === "readings") {
      applyReadings(message.readings);
    } else if (message.type === "resync") {
      loadSnapshot().catch((error) => console.warn("wall: reloading the snapshot failed", error));
    } else {
      panels(message.type, message);
    }
  }

  function tick() {
    document.getElementById("clock").textContent = C.clockText(now(), true);
  }

  async function start(given) {
    config = given;
    map = window[config.map];
    cluster = window[config.tickets];
    sensorLayer = window[config.sensors];
    areaLayer = config.areas ? window[config.areas] : null;
    panels("start", config);
    const status = document.getElementById("live");
    tick();
    setInterval(tick, 1000);
    try {
      await loadSnapshot();
    } catch (error) {
      console.warn("wall: loading the snapshot failed", error);
    }
    // From the snapshot's number on: the server replays what committed since. Without one
    // (the snapshot failed), subscribed first, then asked for what changed: nothing falls between.
    const feedPath = () => {
      document.body.dataset.feedAfter = seq == null ? "" : String(seq);
      return seq == null ? config.feed : `${config.feed}?after=${seq}`;
    };
    C.liveSocket(feedPath, config.page, {
      open() { live = true; C.setLive(status, "live"); if (seq == null) catchUp(); },
      message: onMessage,
      closed() { live = false; C.setLive(status, "offline"); },
    });
    setInterval(retime, 15000);
    setInterval(drawAlerts, 60000);
    // A safety net beside the feed, and it keeps the cursor recent.
    setInterval(() => { if (live) catchUp(); }, 60000);
  }

  return {
    start,
    clusterIcon,
    /* For people and tests looking at the page: what it holds. */
    ticket: (id) => { const held = tickets.get(id); return held ? Object.assign({ deadline: held.state }, held.t) : null; },
    sensor: (id) => { const held = sensors.get(id); return held ? Object.assign({ level: held.level }, held.s) : null; },
    alert: (id) => alerts.get(id) || null,
    openPopup: (id) => {
      const held = tickets.get(id);
      if (!held) return;
      // A clustered marker is first zoomed to (a second call opens it): the cluster's
      // zoomToShowLayer never calls back for a circle marker, which has no icon.
      if (held.marker._map) held.marker.openPopup();
      else cluster.zoomToShowLayer(held.marker, () => {});
    },
    markerColour: (id) => { const held = tickets.get(id); return held ? held.marker.options.fillColor : null; },
    area: (code) => {
      let found = null;
      if (areaLayer) {
        areaLayer.eachLayer((l) => {
          if (l.feature.properties.code === code) found = { name: l.feature.properties.name, fillColor: l.options.fillColor, counts: l.iocCounts };
        });
      }
      return found;
    },
    get openCount() { return tickets.size; },
    get seq() { return seq; },
    get live() { return live; },
  };
})();
