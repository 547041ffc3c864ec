/* Shared by the wall and the console: deadline states, time text, fetch and a reconnecting
   WebSocket. The pages authenticate with the session cookie, which fetch() and WebSocket send
   by themselves (same origin); no script ever sees it. A request that changes something also
   carries the session's CSRF token (from GET /session) in the X-CSRF-Token header. */
"use strict";

window.IocCommon = (function () {
  const COLOURS = { on_track: "#2e7d32", due_soon: "#f9a825", overdue: "#c62828" };
  const STATE_NAMES = {
    new: "Mới", assigned: "Đã phân công", in_progress: "Đang xử lý", waiting: "Chờ bổ sung",
    resolved: "Đã xử lý", closed: "Đã đóng", reopened: "Mở lại", rejected: "Từ chối",
  };
  const DEADLINE_NAMES = { on_track: "Trong hạn", due_soon: "Sắp đến hạn", overdue: "Quá hạn" };
  const ZONE = "Asia/Ho_Chi_Minh";

  /* Deadline state of an open ticket at `now` (ms): overdue past the deadline; due soon from
     due_soon_at (or, without one, once `fraction` of opened → deadline has passed); else on
     track. A ticket waiting for the citizen has its clock paused: judged at the pause. */
  function deadlineState(t, now, fraction) {
    if (t.deadline_at == null) return "on_track";
    const at = t.paused_at != null ? t.paused_at : now;
    if (at > t.deadline_at) return "overdue";
    const soon = t.due_soon_at != null
      ? t.due_soon_at
      : t.opened_at + fraction * (t.deadline_at - t.opened_at);
    return at >= soon ? "due_soon" : "on_track";
  }

  function millis(value) {
    if (value == null) return null;
    return typeof value === "number" ? value : Date.parse(value);
  }

  function clockText(ms, withSeconds) {
    return new Date(ms).toLocaleTimeString("vi-VN", {
      timeZone: ZONE, hour: "2-digit", minute: "2-digit",
      second: withSeconds ? "2-digit" : undefined, hour12: false,
    });
  }

  function dateTimeText(ms) {
    if (ms == null) return "—";
    return new Date(ms).toLocaleString("vi-VN", {
      timeZone: ZONE, day: "2-digit", month: "2-digit", hour: "2-digit", minute: "2-digit",
      hour12: false,
    });
  }

  function spanText(ms) {
    const minutes = Math.max(0, Math.round(Math.abs(ms) / 60000));
    const days = Math.floor(minutes / 1440);
    const hours = Math.floor((minutes % 1440) / 60);
    const mins = minutes % 60;
    if (days > 0) return `${days} ngày ${hours} giờ`;
    if (hours > 0) return `${hours} giờ ${mins} phút`;
    return `${mins} phút`;
  }

  /* "còn 3 giờ 20 phút" or "quá hạn 1 ngày 2 giờ". */
  function deadlineText(deadline, now) {
    if (deadline == null) return "Không có hạn";
    const left = deadline - now;
    return left >= 0 ? `còn ${spanText(left)}` : `quá hạn ${spanText(left)}`;
  }

  function escape(text) {
    return String(text == null ? "" : text).replace(/[&<>"']/g, (c) => ({
      "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;",
    })[c]);
  }

  /* Rows of a compact answer ([[...], ...] with a column list) as objects. */
  function objects(columns, rows) {
    return rows.map((row) => {
      const item = {};
      columns.forEach((name, i) => { item[name] = row[i]; });
      return item;
    });
  }

  function toLogin(page) {
    window.location.assign("/login?next=" + encodeURIComponent(page));
  }

  let csrf = null;  // a promise of the session's CSRF token, asked for once

  function csrfToken(page) {
    if (csrf === null) {
      csrf = fetch("/session", { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then((response) => {
          if (response.status === 401) { toLogin(page); throw new Error("cần đăng nhập lại"); }
          if (!response.ok) throw new Error(response.statusText);
          return response.json();
        })
        .then((body) => body.csrf_token)
        .catch((problem) => { csrf = null; throw problem; });
    }
    return csrf;
  }

  /* GET or POST JSON; a 401 sends the browser to the login page; other errors throw with the
     API's message. A request other than GET carries the CSRF token. */
  async function request(url, page, options, retried) {
    const settings = Object.assign({
      credentials: "same-origin", headers: { Accept: "application/json" },
    }, options || {});
    const method = (settings.method || "GET").toUpperCase();
    if (method !== "GET" && method !== "HEAD") {
      settings.headers = Object.assign({}, settings.headers, { "X-CSRF-Token": await csrfToken(page) });
    }
    const response = await fetch(url, settings);
    if (response.status === 401) {
      toLogin(page);
      throw new Error("cần đăng nhập lại");
    }
    let body = null;
    try { body = await response.json(); } catch (e) { body = null; }
    if (response.status === 403 && body && body.error && body.error.code === "cross_site_request"
        && !retried) {
      csrf = null;  // logged in again in another tab: a new session, a new token
      return request(url, page, options, true);
    }
    if (!response.ok) {
      const error = new Error((body && body.error && body.error.message) || response.statusText);
      error.status = response.status;
      throw error;
    }
    return body;
  }

  /* A WebSocket that reconnects with a growing delay (0.5 s doubling to 10 s). `handlers`:
     open(), message(data), closed(). A close for a refused key (1008) goes to the login page. */
  /* `path` may be a function: it is asked again at each (re)connect, so a page can resume
     from the last notice it received (`?after=<seq>`). The socket asks for array frames
     (`batch=1`: several messages a frame); each message goes to handlers.message in order. */
  function liveSocket(path, page, handlers) {
    let delay = 500;
    let socket = null;
    function connect() {
      const scheme = window.location.protocol === "https:" ? "wss" : "ws";
      const target = typeof path === "function" ? path() : path;
      const batched = `${target}${target.includes("?") ? "&" : "?"}batch=1`;
      socket = new WebSocket(`${scheme}://${window.location.host}${batched}`);
      socket.onopen = () => { delay = 500; handlers.open(); };
      socket.onmessage = (event) => {
        let frame;
        try { frame = JSON.parse(event.data); } catch (e) { return; }
        for (const message of Array.isArray(frame) ? frame : [frame]) handlers.message(message);
      };
      socket.onclose = (event) => {
        handlers.closed();
        if (event.code === 1008) { toLogin(page); return; }
        setTimeout(connect, delay);
        delay = Math.min(delay * 2, 10000);
      };
    }
    connect();
    return { get socket() { return socket; } };
  }

  /* A cluster's icon: its count, coloured by the worst deadline state among its markers
     (each marker carries its state as options.iocState). `sizes` is [normal, kiosk] in px. */
  function clusterIcon(group, sizes, extraClass) {
    const children = group.getAllChildMarkers();
    let worst = "on_track";
    for (const marker of children) {
      const state = marker.options.iocState;
      if (state === "overdue") { worst = "overdue"; break; }
      if (state === "due_soon") worst = "due_soon";
    }
    const size = document.body.classList.contains("kiosk") ? sizes[1] : sizes[0];
    return L.divIcon({
      html: `<div><span>${children.length}</span></div>`,
      className: `ioc-cluster ${extraClass ? extraClass + " " : ""}${worst}`,
      iconSize: L.point(size, size),
    });
  }

  function setLive(element, state) {
    const texts = { live: "Trực tuyến", offline: "Mất kết nối — đang kết nối lại", connecting: "Đang kết nối…" };
    element.dataset.state = state;
    element.textContent = texts[state] || state;
  }

  return {
    COLOURS, STATE_NAMES, DEADLINE_NAMES, deadlineState, millis, clockText, dateTimeText,
    deadlineText, spanText, escape, objects, request, liveSocket, setLive, toLogin, clusterIcon,
  };
})();
