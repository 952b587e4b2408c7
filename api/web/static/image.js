"use strict";
// The image page's viewer: the display rendition on a canvas with a map over it. The gray maps
// (255 = most suspicious) are coloured here, through the server's own colour scale, so that the
// threshold, the inverted mask and the opacity change at once without a request; zoom and pan
// redraw the stored renderings only (a 24 MP original is fetched only when asked for).
(() => {
  const $ = (id) => document.getElementById(id);
  const viewer = $("viewer");
  const view = $("view");
  const side = $("side");
  const mapSelect = $("map");
  const overlay = $("overlay");
  const opacity = $("opacity");
  const threshold = $("threshold");
  const invert = $("invert");
  const FLICKER_MS = 600;
  const MAX_ZOOM = 16;
  const state = { zoom: 1, cx: 0.5, cy: 0.5, mode: "overlay", flickerShow: true };
  const layer = document.createElement("canvas");
  const maps = new Map();
  let picture = null;
  let lut = null;
  let map = null;
  let flicker = null;
  let frame = 0;
  let queued = false;

  function problem(text) {
    $("viewer-problem").textContent = text;
    $("viewer-problem").hidden = false;
  }

  async function loadImage(url) {
    const image = new Image();
    image.src = url;
    await image.decode();
    return image;
  }

  function pixelsOf(image) {
    const canvas = document.createElement("canvas");
    canvas.width = image.naturalWidth;
    canvas.height = image.naturalHeight;
    const context = canvas.getContext("2d", { willReadFrequently: true });
    context.drawImage(image, 0, 0);
    return context.getImageData(0, 0, canvas.width, canvas.height).data;
  }

  /** A gray map's values (one byte a pixel), loaded once per URL. */
  function loadMap(url) {
    if (!maps.has(url)) {
      maps.set(url, loadImage(url).then((image) => {
        const rgba = pixelsOf(image);
        const gray = new Uint8Array(rgba.length / 4);
        for (let i = 0; i < gray.length; i++) gray[i] = rgba[i * 4];
        return { width: image.naturalWidth, height: image.naturalHeight, gray };
      }));
    }
    return maps.get(url);
  }

  /**
   * Colour the selected map in the scale's colours, each pixel as opaque as it is suspicious (times the
   * opacity), as the server's overlay is, so that clean areas stay visible: only pixels at or above the
   * threshold. Inverted, the pixels below the threshold are drawn instead, as opaque as they are clean:
   * everything but the suspicious regions is dimmed.
   */
  function paintLayer() {
    if (!map) return;
    const cut = Math.round((Number(threshold.value) * 255) / 100);
    const strength = Number(opacity.value) / 100;
    const inverted = invert.checked;
    layer.width = map.width;
    layer.height = map.height;
    const context = layer.getContext("2d");
    const out = context.createImageData(map.width, map.height);
    const pixels = out.data;
    const gray = map.gray;
    for (let i = 0, j = 0; i < gray.length; i++, j += 4) {
      const value = gray[i];
      if (value >= cut !== inverted) {
        pixels[j] = lut[value * 4];
        pixels[j + 1] = lut[value * 4 + 1];
        pixels[j + 2] = lut[value * 4 + 2];
        pixels[j + 3] = strength * (inverted ? 255 - value : value);
      }
    }
    context.putImageData(out, 0, 0);
  }

  function fitCanvas(canvas) {
    const ratio = window.devicePixelRatio || 1;
    const width = Math.max(1, Math.round(canvas.clientWidth * ratio));
    const height = Math.max(1, Math.round(canvas.clientHeight * ratio));
    if (canvas.width !== width || canvas.height !== height) {
      canvas.width = width;
      canvas.height = height;
    }
  }

  /** Where the picture lies on ``canvas``: fitted, then zoomed about the point (cx, cy) of the picture. */
  function placement(canvas) {
    const scale = Math.min(canvas.width / picture.naturalWidth, canvas.height / picture.naturalHeight) * state.zoom;
    const w = picture.naturalWidth * scale;
    const h = picture.naturalHeight * scale;
    return { x: canvas.width / 2 - state.cx * w, y: canvas.height / 2 - state.cy * h, w, h };
  }

  function render(canvas, withPicture, withMap) {
    fitCanvas(canvas);
    const context = canvas.getContext("2d");
    context.clearRect(0, 0, canvas.width, canvas.height);
    if (!picture) return;
    const place = placement(canvas);
    context.imageSmoothingEnabled = state.zoom < 4;  // closer than that, show pixels as squares
    if (withPicture) context.drawImage(picture, place.x, place.y, place.w, place.h);
    if (withMap && map) context.drawImage(layer, place.x, place.y, place.w, place.h);
  }

  function draw() {
    queued = false;
    if (state.mode === "side") {
      render(view, true, false);
      render(side, false, true);
    } else {
      render(view, true, overlay.checked && (state.mode !== "flicker" || state.flickerShow));
    }
    $("zoom-value").textContent = `${Math.round(state.zoom * 100)}%`;
    view.dataset.frame = String(++frame);
  }

  function redraw() {
    if (!queued) {
      queued = true;
      requestAnimationFrame(draw);
    }
  }

  function clamp(value, low, high) {
    return Math.min(high, Math.max(low, value));
  }

  /** Zoom by ``factor`` keeping the picture's point under (px, py) of the canvas where it is. */
  function zoomAt(factor, px, py) {
    if (!picture) return;
    const before = placement(view);
    const u = (px - before.x) / before.w;
    const v = (py - before.y) / before.h;
    state.zoom = clamp(state.zoom * factor, 1, MAX_ZOOM);
    const after = placement(view);
    state.cx = clamp(u - (px - view.width / 2) / after.w, 0, 1);
    state.cy = clamp(v - (py - view.height / 2) / after.h, 0, 1);
    if (state.zoom === 1) state.cx = state.cy = 0.5;
    redraw();
  }

  function pan(dx, dy) {
    if (!picture) return;
    const place = placement(view);
    state.cx = clamp(state.cx - dx / place.w, 0, 1);
    state.cy = clamp(state.cy - dy / place.h, 0, 1);
    redraw();
  }

  async function selectMap() {
    const option = mapSelect.selectedOptions[0];
    if (!option) return;
    try {
      map = await loadMap(option.dataset.url);
      paintLayer();
      redraw();
    } catch (_) {
      problem("The map could not be loaded.");
    }
  }

  function setMode(mode) {
    state.mode = mode;
    side.hidden = mode !== "side";
    clearInterval(flicker);
    flicker = null;
    state.flickerShow = true;
    if (mode === "flicker") {
      flicker = setInterval(() => {
        state.flickerShow = !state.flickerShow;
        redraw();
      }, FLICKER_MS);
    }
    redraw();
  }

  for (const control of [opacity, threshold, invert]) {
    control.addEventListener("input", () => {
      $("threshold-value").textContent = threshold.value;
      threshold.setAttribute("aria-valuetext", `${threshold.value} of 100`);
      opacity.setAttribute("aria-valuetext", `${opacity.value} percent`);
      paintLayer();
      redraw();
    });
  }
  overlay.addEventListener("change", redraw);
  mapSelect.addEventListener("change", selectMap);
  for (const radio of document.querySelectorAll('input[name="mode"]')) radio.addEventListener("change", () => setMode(radio.value));
  $("zoom-in").addEventListener("click", () => zoomAt(1.5, view.width / 2, view.height / 2));
  $("zoom-out").addEventListener("click", () => zoomAt(1 / 1.5, view.width / 2, view.height / 2));
  $("zoom-fit").addEventListener("click", () => { state.zoom = 1; state.cx = state.cy = 0.5; redraw(); });
  window.addEventListener("resize", redraw);

  for (const canvas of [view, side]) {
    canvas.addEventListener("wheel", (event) => {
      event.preventDefault();
      const ratio = window.devicePixelRatio || 1;
      zoomAt(Math.pow(1.0015, -event.deltaY), event.offsetX * ratio, event.offsetY * ratio);
    }, { passive: false });
    canvas.addEventListener("pointerdown", (event) => {
      canvas.setPointerCapture(event.pointerId);
      let last = [event.clientX, event.clientY];
      const move = (e) => {
        const ratio = window.devicePixelRatio || 1;
        pan((e.clientX - last[0]) * ratio, (e.clientY - last[1]) * ratio);
        last = [e.clientX, e.clientY];
      };
      const up = () => {
        canvas.removeEventListener("pointermove", move);
        canvas.removeEventListener("pointerup", up);
      };
      canvas.addEventListener("pointermove", move);
      canvas.addEventListener("pointerup", up);
    });
  }
  view.addEventListener("keydown", (event) => {
    const step = view.width / 10;
    const actions = {
      "+": () => zoomAt(1.5, view.width / 2, view.height / 2),
      "=": () => zoomAt(1.5, view.width / 2, view.height / 2),
      "-": () => zoomAt(1 / 1.5, view.width / 2, view.height / 2),
      0: () => { state.zoom = 1; state.cx = state.cy = 0.5; redraw(); },
      ArrowLeft: () => pan(step, 0),
      ArrowRight: () => pan(-step, 0),
      ArrowUp: () => pan(0, step),
      ArrowDown: () => pan(0, -step),
    };
    if (actions[event.key]) {
      event.preventDefault();
      actions[event.key]();
    }
  });

  const full = $("full-resolution");
  if (full) {
    full.addEventListener("click", async () => {
      full.disabled = true;
      full.textContent = "Loading the original…";
      try {
        picture = await loadImage(viewer.dataset.originalUrl);
        full.textContent = "Full resolution shown";
        redraw();
      } catch (_) {
        full.textContent = "Load full resolution";
        full.disabled = false;
        problem("The original could not be shown by this browser; download it instead.");
      }
    });
  }

  (async () => {
    const first = mapSelect.selectedOptions[0];
    const firstMap = first ? loadMap(first.dataset.url) : null;  // fetched beside the picture, not after it
    try {
      const [shown, scale] = await Promise.all([loadImage(viewer.dataset.displayUrl), loadImage(viewer.dataset.scaleUrl)]);
      picture = shown;
      lut = pixelsOf(scale);
    } catch (_) {
      problem("The picture could not be shown.");
      return;
    }
    if (firstMap) await selectMap();
    else for (const control of [mapSelect, overlay, opacity, threshold, invert]) control.disabled = true;
    draw();
    document.body.dataset.ready = "1";
  })();
})();
