/* The wall's boards beside the map: public-service dossiers (and, from other files, more).

   wall.js hands every snapshot, catch-up and live message to `update(kind, value)`; each board
   takes what concerns it. The dossier figures are computed by the server (set-based SQL), so
   the board only draws the latest figures it was given. */
"use strict";

window.IocWallPanels = (function () {
  const CHANNEL_NAMES = {
    online: "Trực tuyến",
    counter: "Trực tiếp tại Bộ phận một cửa",
    postal: "Qua bưu điện",
    bcci: "Bưu chính công ích (BCCI)",
    kiosk: "Ki-ốt tự phục vụ 24/7",
  };
  const handlers = []; // other boards: functions (kind, value, config)
  let config = null;
  let dossiers = null;

  const number = (n) => (n == null ? "–" : Number(n).toLocaleString("vi-VN"));
  const percent = (r) => (r == null ? "–" : `${(r * 100).toLocaleString("vi-VN", { maximumFractionDigits: 1 })} %`);

  function setText(id, text) {
    const element = document.getElementById(id);
    if (element) element.textContent = text;
  }

  function drawDossiers(board) {
    if (!board) return;
    dossiers = board;
    const C = window.IocCommon;
    setText("dossier-received", number(board.received_today));
    setText("dossier-processing", number(board.in_processing));
    setText("dossier-due-soon", number(board.due_soon));
    setText("dossier-overdue", number(board.overdue));
    setText("dossier-returned", number(board.returned_today));
    setText("dossier-on-time-today", percent(board.on_time_today));
    setText("dossier-on-time-month", percent(board.on_time_month));
    const channels = Object.entries(board.channels || {}).sort((a, b) => b[1] - a[1]);
    const total = channels.reduce((sum, [, n]) => sum + n, 0);
    const list = document.getElementById("dossier-channels");
    list.innerHTML = total === 0 ? '<li class="empty">Chưa có hồ sơ</li>' : channels.map(([code, n]) => {
      const share = Math.round((n / total) * 100);
      return `<li data-channel="${C.escape(code)}"><span class="label">${C.escape(CHANNEL_NAMES[code] || code)}</span>
        <span class="bar"><span style="width:${share}%"></span></span>
        <span class="value">${number(n)} · ${share} %</span></li>`;
    }).join("");
    const ranking = document.getElementById("dossier-agencies");
    const top = board.top_overdue || [];
    ranking.innerHTML = top.length === 0 ? '<li class="empty">Không có hồ sơ quá hạn</li>' : top.map(([code, n]) =>
      `<li data-agency="${C.escape(code)}"><span class="label">${C.escape(config.agencies[code] || code)}</span>
        <span class="value">${number(n)}</span></li>`).join("");
    document.getElementById("dossier-board").dataset.updates =
      String(Number(document.getElementById("dossier-board").dataset.updates || 0) + 1);
  }

  function update(kind, value) {
    if (kind === "start") config = value;
    else if (kind === "snapshot" || kind === "changes") drawDossiers(value.dossiers);
    else if (kind === "dossiers") drawDossiers(value.dossiers);
    for (const handler of handlers) {
      try {
        handler(kind, value, config);
      } catch (error) {
        console.warn("wall: a board failed to draw", error);
      }
    }
  }

  return {
    update,
    /* Another board (traffic, heat, playlist) listens to the same kinds. */
    register: (handler) => handlers.push(handler),
    get dossiers() { return dossiers; },
  };
})();
