/* The video wall's playlist: in kiosk mode the wall rotates through its views (the whole
   province, the city centre, the dossier board, the traffic board), each for its seconds.
   A view is a map position or a board brought to the front: nothing reloads, the live feed
   and every layer keep running underneath. `IocWallPlaylist.every(ms)` overrides each step's
   time (for people and tests trying a playlist quickly). */
"use strict";

window.IocWallPlaylist = (function () {
  const CENTRE_ZOOM_IN = 3; // without a configured centre: the province's middle, this much closer
  let map = null;
  let steps = [];
  let at = -1;
  let timer = null;
  let home = null; // the province view: where the page fitted the map at load
  let centre = null;
  let override = null;

  function show(view) {
    document.body.dataset.view = view;
    if (view === "province" && home) map.setView(home.center, home.zoom, { animate: false });
    else if (view === "centre" && centre) map.setView(centre.center, centre.zoom, { animate: false });
  }

  function next() {
    if (!steps.length) return;
    at = (at + 1) % steps.length;
    const [view, seconds] = steps[at];
    show(view);
    document.body.dataset.viewChanges = String(Number(document.body.dataset.viewChanges || 0) + 1);
    timer = setTimeout(next, override != null ? override : seconds * 1000);
  }

  function start(config) {
    steps = (config.playlist || []).filter(([view]) => ["province", "centre", "dossiers", "traffic"].includes(view));
    if (!steps.length) return;
    map = window[config.map];
    home = { center: map.getCenter(), zoom: map.getZoom() };
    centre = config.centre
      ? { center: L.latLng(config.centre[1], config.centre[0]), zoom: config.centre[2] }
      : { center: home.center, zoom: home.zoom + CENTRE_ZOOM_IN };
    next();
  }

  window.IocWallPanels.register((kind, value) => {
    if (kind === "start") start(value);
  });

  return {
    every(ms) {
      override = ms;
      if (timer !== null) { clearTimeout(timer); timer = setTimeout(next, ms); }
    },
    get view() { return document.body.dataset.view || null; },
    get zoom() { return map ? map.getZoom() : null; },
  };
})();
