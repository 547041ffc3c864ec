/* The wall's traffic board: the most congested and the silent sensors, with how long each has
   been so, and a line chart (inline SVG) of the province's vehicles per hour today against the
   same weekday's baseline. The figures come from the server (snapshot, catch-up, and a live
   "traffic" message whenever a sensor's alert changes). */
"use strict";

(function () {
  const C = window.IocCommon;
  const W = 320;
  const H = 130;
  const PAD = { left: 34, right: 6, top: 8, bottom: 18 };
  let offset = 0; // server time − browser time (ms)
  let held = null;

  const number = (n) => Number(n).toLocaleString("vi-VN", { maximumFractionDigits: 0 });

  function rows(columns, list) {
    return C.objects(columns || [], list || []);
  }

  function drawSensors(board) {
    const at = Date.now() + offset;
    const congested = rows(board.congested_columns, board.congested);
    const silent = rows(board.silent_columns, board.silent);
    document.getElementById("traffic-congested-total").textContent = String(board.congested_total);
    document.getElementById("traffic-silent-total").textContent = String(board.silent_total);
    document.getElementById("traffic-congested").innerHTML = congested.length === 0
      ? '<li class="empty">Không có điểm ùn tắc</li>'
      : congested.map((s) => {
        const speed = s.speed_kmh == null ? ""
          : `${number(s.speed_kmh)} km/h (thường ${s.usual_speed_kmh == null ? "–" : number(s.usual_speed_kmh)})`;
        return `<li data-sensor="${C.escape(s.id)}"><span class="label">${C.escape(s.name || s.id)}</span>
          <span class="value">${C.escape(speed)}</span>
          <span class="since">${s.since ? C.spanText(at - s.since) : ""}</span></li>`;
      }).join("");
    document.getElementById("traffic-silent").innerHTML = silent.length === 0
      ? '<li class="empty">Mọi cảm biến đều có số liệu</li>'
      : silent.map((s) => `<li data-sensor="${C.escape(s.id)}">
          <span class="label">${C.escape(s.name || s.id)}</span>
          <span class="since">${s.since ? `im lặng ${C.spanText(at - s.since)}` : ""}</span></li>`).join("");
  }

  function path(values, x, y) {
    let d = "";
    let pen = false;
    values.forEach((v, h) => {
      if (v == null) { pen = false; return; }
      d += `${pen ? "L" : "M"}${x(h).toFixed(1)},${y(v).toFixed(1)}`;
      pen = true;
    });
    return d;
  }

  function drawChart(chart) {
    const svg = document.getElementById("traffic-chart");
    if (!svg || !chart) return;
    const all = chart.today.concat(chart.baseline).filter((v) => v != null);
    const top = Math.max(1, ...all);
    const x = (h) => PAD.left + (h / 23) * (W - PAD.left - PAD.right);
    const y = (v) => H - PAD.bottom - (v / top) * (H - PAD.top - PAD.bottom);
    const ticks = [0, 6, 12, 18, 23].map((h) =>
      `<text x="${x(h)}" y="${H - 4}" text-anchor="middle">${h}h</text>`).join("");
    svg.innerHTML = `<line class="axis" x1="${PAD.left}" y1="${H - PAD.bottom}" x2="${W - PAD.right}" y2="${H - PAD.bottom}"/>
      <line class="axis" x1="${PAD.left}" y1="${PAD.top}" x2="${PAD.left}" y2="${H - PAD.bottom}"/>
      <text x="${PAD.left - 3}" y="${PAD.top + 6}" text-anchor="end">${number(top)}</text>
      <text x="${PAD.left - 3}" y="${H - PAD.bottom}" text-anchor="end">0</text>${ticks}
      <path class="baseline" d="${path(chart.baseline, x, y)}"/>
      <path class="today" d="${path(chart.today, x, y)}"/>`;
    svg.dataset.points = String(chart.today.filter((v) => v != null).length);
  }

  function update(kind, value) {
    let board = null;
    if ((kind === "snapshot" || kind === "changes") && value.traffic) {
      offset = value.server_time - Date.now();
      board = value.traffic;
      drawChart(board.chart);
    } else if (kind === "traffic") {
      board = value.traffic;
    }
    if (board) {
      held = board;
      drawSensors(board);
    }
  }

  window.IocWallPanels.register(update);
  // How long each has been so keeps growing while nothing changes.
  setInterval(() => { if (held) drawSensors(held); }, 30000);
})();
