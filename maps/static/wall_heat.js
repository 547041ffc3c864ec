/* The wall's heat layer (folium's HeatMap, leaflet-heat): field reports of the last 7 days.

   The snapshot gives the reports per ~110 m cell; after it, each report the feed brings (a new
   ticket, or one more report joining a ticket) warms the ticket's place. A fresh snapshot
   (a reload after a long drop) starts from the server's counts again. */
"use strict";

(function () {
  const FLOOR = 3; // a cell with this many reports is drawn at full heat, or the busiest one
  let layer = null;
  let since = null; // server time of the snapshot (ms): tickets opened before it were counted
  const reports = new Map(); // ticket id → reports already counted
  const cells = new Map(); // "lat,lon" → reports

  function draw() {
    let top = FLOOR;
    for (const n of cells.values()) top = Math.max(top, n);
    const points = [];
    for (const [key, n] of cells) {
      const [lat, lon] = key.split(",").map(Number);
      points.push([lat, lon, Math.min(1, n / top)]);
    }
    layer.setLatLngs(points);
    document.body.dataset.heatPoints = String(points.length);
  }

  function warm(lat, lon, n) {
    const key = `${lat.toFixed(3)},${lon.toFixed(3)}`;
    cells.set(key, (cells.get(key) || 0) + n);
  }

  function fromSnapshot(snap) {
    since = snap.server_time - 60000;
    cells.clear();
    reports.clear();
    for (const [lat, lon, n] of snap.heat || []) warm(lat, lon, n);
    for (const t of window.IocCommon.objects(snap.ticket_columns, snap.tickets)) {
      reports.set(t.id, t.reports);
    }
    draw();
  }

  function fromTickets({ rows, columns }) {
    let warmed = false;
    for (const t of window.IocCommon.objects(columns, rows)) {
      const counted = reports.get(t.id);
      if (counted === undefined && t.opened_at < since) continue; // older: in the snapshot's counts
      const fresh = t.reports - (counted || 0);
      reports.set(t.id, Math.max(t.reports, counted || 0));
      if (fresh > 0) { warm(t.lat, t.lon, fresh); warmed = true; }
    }
    if (warmed) draw();
  }

  window.IocWallPanels.register((kind, value, config) => {
    if (kind === "start") layer = window[config.heat] || null;
    if (!layer) return;
    if (kind === "snapshot") fromSnapshot(value);
    else if (kind === "tickets" && since !== null) fromTickets(value);
  });
})();
