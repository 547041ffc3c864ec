/* The wall's dossier layer: open administrative dossiers at their place (or their agency's),
   as diamonds coloured by deadline state, in a marker cluster of their own.

   The snapshot brings every dossier of the layer; each dossier notice of the live feed brings
   the rows of the dossiers it names (or the whole layer again). A row carries the dossier's
   event count as its version: an older row than the one held changes nothing, and a row with
   no place (finished, or no longer located) takes the dossier off the map. */
"use strict";

window.IocWallDossiers = (function () {
  const C = window.IocCommon;
  const RETIME_MS = 15000;
  let layer = null;
  let config = null;
  let offset = 0; // server time − browser time (ms)
  const held = new Map(); // dossier id → {d, marker, state}
  const gone = new Map(); // dossier id → version it left the map with

  const now = () => Date.now() + offset;

  /* The board's rule: overdue past the deadline, due soon from due_soon_at on. */
  function deadlineState(d, at) {
    if (d.deadline_at != null && at > d.deadline_at) return "overdue";
    if (d.due_soon_at != null && at >= d.due_soon_at) return "due_soon";
    return "on_track";
  }

  function icon(state) {
    const size = document.body.classList.contains("kiosk") ? 18 : 14;
    return L.divIcon({
      html: `<span style="background:${C.COLOURS[state]}"></span>`,
      className: `ioc-dossier ${state}`,
      iconSize: L.point(size, size),
    });
  }

  const clusterIcon = (group) => C.clusterIcon(group, [36, 54], "ioc-dossier-cluster");

  function popup(d, state) {
    const agency = config.agencies[d.agency] || d.agency;
    const paused = d.paused_at != null ? `<br>Tạm dừng từ ${C.dateTimeText(d.paused_at)}` : "";
    const due = d.deadline_at != null
      ? `${C.escape(C.deadlineText(d.deadline_at, now()))} (${C.dateTimeText(d.deadline_at)})`
      : "chưa có hạn";
    return `<div class="ioc-popup"><b>Hồ sơ ${C.escape(d.id)}</b> · thủ tục ${C.escape(d.procedure)}<br>
      ${C.escape(agency)}<br>
      <span class="${state}">${C.DEADLINE_NAMES[state]}</span>: ${due}<br>
      tiếp nhận lúc ${C.dateTimeText(d.accepted_at)}${paused}</div>`;
  }

  function remove(id, version) {
    const h = held.get(id);
    if (h) {
      layer.removeLayer(h.marker);
      held.delete(id);
    }
    gone.set(id, version);
  }

  /* Apply one row; new markers are collected for one bulk add. */
  function upsert(d, added) {
    const h = held.get(d.id);
    if (h && h.d.version > d.version) return;
    const left = gone.get(d.id);
    if (!h && left !== undefined && left >= d.version) return;
    if (d.lat == null || d.lon == null) { remove(d.id, d.version); return; }
    gone.delete(d.id);
    const state = deadlineState(d, now());
    if (!h) {
      const marker = L.marker([d.lat, d.lon], { icon: icon(state), iocState: state, iocDossier: d.id });
      if (!document.body.classList.contains("kiosk")) {
        marker.bindPopup(() => { const x = held.get(d.id); return x ? popup(x.d, x.state) : ""; });
      }
      held.set(d.id, { d, marker, state });
      added.push(marker);
      return;
    }
    const moved = h.d.lat !== d.lat || h.d.lon !== d.lon;
    h.d = d;
    if (moved) {
      layer.removeLayer(h.marker);
      h.marker.setLatLng([d.lat, d.lon]);
      added.push(h.marker);
    }
    if (h.state !== state) restyle(h, state);
  }

  function restyle(h, state) {
    h.state = state;
    h.marker.options.iocState = state;
    h.marker.setIcon(icon(state));
    if (layer.hasLayer(h.marker)) layer.refreshClusters(h.marker);
  }

  function apply(rows, columns, replace) {
    if (replace) {
      layer.clearLayers();
      held.clear();
      gone.clear();
    }
    const added = [];
    for (const d of C.objects(columns, rows || [])) upsert(d, added);
    if (added.length) layer.addLayers(added);
    document.body.dataset.dossierPlaces = String(held.size);
  }

  function retime() {
    const at = now();
    for (const h of held.values()) {
      const state = deadlineState(h.d, at);
      if (state !== h.state) restyle(h, state);
    }
  }

  window.IocWallPanels.register((kind, value, given) => {
    if (kind === "start") {
      config = given;
      layer = config.dossiers ? window[config.dossiers] : null;
      if (layer) setInterval(retime, RETIME_MS);
    }
    if (!layer) return;
    if (kind === "snapshot") {
      offset = value.server_time - Date.now();
      apply(value.places, value.place_columns, true);
    } else if (kind === "dossiers" && value.places) {
      apply(value.places, config.placeColumns, Boolean(value.all_places));
    }
  });

  return {
    clusterIcon,
    /* For people and tests looking at the page. */
    dossier: (id) => { const h = held.get(id); return h ? Object.assign({ deadline: h.state }, h.d) : null; },
    markerColour: (id) => { const h = held.get(id); return h ? C.COLOURS[h.state] : null; },
    get count() { return held.size; },
  };
})();
