/* deskcorder replay page. Vanilla JS, no network. Every string from a record is set
   with textContent (never as markup); the data comes from a JSON script element. */
(function () {
  "use strict";

  var SVGNS = "http://www.w3.org/2000/svg";
  var MIME = { webp: "image/webp", jpeg: "image/jpeg", png: "image/png" };
  var KEY_WORDS = "L letter \u00b7 D digit \u00b7 P punctuation \u00b7 \u2423 space \u00b7 \u232b backspace";
  var NO_SHOT_STEPS = { excluded: 1, pause: 1, gap: 1, end: 1 };

  var data = JSON.parse(document.getElementById("replay-data").textContent);
  var images = JSON.parse(document.getElementById("replay-images").textContent);
  var steps = data.steps || [];
  var shots = data.shots || [];
  var windows = data.windows || [];
  var spans = data.spans || [];
  var T0 = data.t0 || 0;
  var T1 = Math.max(data.t1 || 0, T0 + 1);
  var session = data.session || {};
  var cur = -1;
  var playing = null;
  var shown = null; // indexes of steps matching the filter, or null for all
  var stepItems = [];
  var thumbs = [];
  var curThumb = null;
  var showAlt = false; // show the step's other screenshot (after / before)
  var imageCache = {};

  function $(id) { return document.getElementById(id); }

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  function svg(tag, attrs, text) {
    var e = document.createElementNS(SVGNS, tag);
    for (var k in attrs) if (Object.prototype.hasOwnProperty.call(attrs, k)) e.setAttribute(k, String(attrs[k]));
    if (text !== undefined) e.textContent = String(text);
    return e;
  }

  function pad(n, w) { n = String(n); while (n.length < w) n = "0" + n; return n; }

  function clock(ms) { // session time: h:mm:ss or m:ss, with tenths
    var neg = ms < 0; ms = Math.abs(ms);
    var s = Math.floor(ms / 1000), h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
    var tenth = Math.floor((ms % 1000) / 100);
    var out = (h ? h + ":" + pad(m, 2) : String(m)) + ":" + pad(s % 60, 2) + "." + tenth;
    return (neg ? "-" : "") + out;
  }

  function duration(ms) {
    if (ms < 1000) return Math.round(ms) + " ms";
    if (ms < 10000) return (ms / 1000).toFixed(1) + " s";
    var s = Math.round(ms / 1000), h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
    if (h) return h + " h " + pad(m, 2) + " min";
    if (m) return m + " min " + pad(s % 60, 2) + " s";
    return s + " s";
  }

  function bytes(n) {
    if (n < 1024) return n + " B";
    var units = ["KB", "MB", "GB", "TB"], i = -1;
    do { n /= 1024; i++; } while (n >= 1024 && i < units.length - 1);
    return n.toFixed(n < 10 ? 1 : 0) + " " + units[i];
  }

  function plural(n, word, many) { return n + " " + (n === 1 ? word : (many || word + "s")); }

  function wall(t) {
    // the clock anchor in force at t (a suspend or a wall-clock step brings a new one)
    var c = session.clock, all = session.clocks || [];
    for (var i = 0; i < all.length && all[i].from <= t; i++) c = all[i];
    if (!c) return null;
    return new Date(c.unix_ms + (t - c.t));
  }

  function hue(text) {
    var h = 0;
    for (var i = 0; i < text.length; i++) h = (h * 31 + text.charCodeAt(i)) >>> 0;
    return h % 360;
  }

  function winColour(index) {
    var w = windows[index] || {};
    return "hsl(" + hue(String(w.app || w.process || w.title || "?")) + " 55% 42%)";
  }

  function pct(t) { return ((t - T0) / (T1 - T0)) * 100; }

  /* ---------- images ---------- */
  function imageUrl(shot) {
    if (!shot) return null;
    if (images.mode === "files") return (images.urls || {})[shot.sha] || null;
    if (images.mode === "inline") {
      if (imageCache[shot.sha]) return imageCache[shot.sha];
      if (!/^[0-9a-f]{64}$/.test(shot.sha)) return null;
      var node = document.getElementById("img-" + shot.sha);
      if (!node) return null;
      var url = "data:" + (MIME[shot.fmt] || "application/octet-stream") + ";base64," + node.textContent.trim();
      imageCache[shot.sha] = url;
      return url;
    }
    return null;
  }

  function thumbUrl(shot) { // a small copy for the screenshot sheet, when the page has one
    return (shot && images.thumbs && images.thumbs[shot.sha]) || imageUrl(shot);
  }

  /* ---------- header and summary ---------- */
  function header() {
    var sub = [];
    var start = wall(T0), end = wall(T1);
    if (start) {
      sub.push(start.toLocaleString() + " \u2013 " + (end ? end.toLocaleTimeString() : "") +
        " (" + start.toISOString().replace(".000Z", "Z") + ")");
    }
    if (session.user) sub.push("user " + session.user);
    if (session.device) sub.push("device " + session.device);
    if (session.keystrokes) sub.push("keystrokes: " + session.keystrokes);
    $("subtitle").textContent = sub.join(" \u00b7 ");

    var sum = data.summary || {};
    if (images.mode === "inline") { // sizes of the images this page holds
      var seen = {};
      sum.image_bytes = 0;
      sum.images_missing = 0;
      shots.forEach(function (s) {
        if (seen[s.sha]) return;
        seen[s.sha] = 1;
        var node = /^[0-9a-f]{64}$/.test(s.sha) ? document.getElementById("img-" + s.sha) : null;
        if (node) sum.image_bytes += Number(node.dataset.bytes) || 0; else sum.images_missing++;
      });
    }
    var perApp = {};
    windows.forEach(function (w) {
      var app = w.app || w.process || w.title || "?";
      perApp[app] = (perApp[app] || 0) + (w.focused_ms || 0);
    });
    var top = Object.keys(perApp).filter(function (a) { return perApp[a] > 0; })
      .sort(function (a, b) { return perApp[b] - perApp[a]; }).slice(0, 4)
      .map(function (a) { return a + " " + duration(perApp[a]); });
    var what = (data.scope && data.scope.kind === "chunks") ? "This part of the session" : "This session";
    var keys = {
      full: plural(sum.by_kind && sum.by_kind.text || 0, "piece") + " of typed text (scrubbed)",
      redacted: "key kinds only, never the characters typed",
      shortcuts: "shortcuts and special keys only, no typing",
      off: "no keys"
    }[session.keystrokes] || "keys as recorded";
    var parts = [what + " holds " + duration(sum.duration_ms || 0) + " in " +
      plural(sum.windows || 0, "window") + (top.length ? " (" + top.join(", ") + ")" : ""),
      plural(sum.steps || 0, "step"), plural(sum.screenshots || 0, "screenshot"), keys];
    var stops = [];
    if (sum.pauses) stops.push(plural(sum.pauses, "pause"));
    if (sum.exclusions) stops.push(plural(sum.exclusions, "excluded window"));
    if (sum.gaps) stops.push(plural(sum.gaps, "gap"));
    $("glance").textContent = parts.join("; ") + "." + (stops.length ? " Marked: " + stops.join(", ") + "." : "");

    var scope = data.scope || {};
    if (scope.note || (scope.commands && scope.commands.length)) {
      var box = $("scope");
      box.hidden = false;
      if (scope.note) box.appendChild(el("p", null, scope.note));
      (scope.commands || []).forEach(function (c) {
        var p = el("p", null, c[0] + ": ");
        p.appendChild(el("code", null, c[1]));
        box.appendChild(p);
      });
    }
    if (data.warnings && data.warnings.length) {
      var ul = $("warnings");
      ul.hidden = false;
      data.warnings.forEach(function (w) { ul.appendChild(el("li", null, w)); });
    }

    var cards = [
      [duration(sum.duration_ms || 0), "duration"],
      [(sum.events || 0).toLocaleString(), "input events"],
      [(sum.steps || 0).toLocaleString(), data.source === "actions" ? "actions" : "steps"],
      [(sum.screenshots || 0).toLocaleString(), "screenshots" + (sum.images !== sum.screenshots ? " (" + sum.images + " distinct)" : "")],
      [bytes((sum.chunk_bytes || 0) + (sum.image_bytes || 0)), "stored (" + bytes(sum.chunk_bytes || 0) + " records, " + bytes(sum.image_bytes || 0) + " images)"],
      [String(sum.windows || 0), "windows"],
      [String(sum.pauses || 0), "pauses and locks"],
      [String(sum.exclusions || 0), "excluded windows"],
      [String(sum.gaps || 0), "gaps" + (sum.dropped ? " (" + sum.dropped + " lost)" : "")]
    ];
    var box2 = $("summary");
    cards.forEach(function (c) {
      var d = el("div", "card");
      d.appendChild(el("b", null, c[0]));
      d.appendChild(el("span", null, c[1]));
      box2.appendChild(d);
    });
  }

  /* ---------- timeline ---------- */
  function niceStep(total) {
    var choices = [0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400];
    for (var i = 0; i < choices.length; i++) if (total / (choices[i] * 1000) <= 10) return choices[i] * 1000;
    return 28800000;
  }

  function timeline() {
    var ruler = $("ruler");
    var stepMs = niceStep(T1 - T0);
    for (var t = Math.ceil(T0 / stepMs) * stepMs; t <= T1; t += stepMs) {
      var s = el("span", null, stepMs < 1000 ? clock(t) : clock(t).replace(/\.\d$/, ""));
      s.style.left = pct(t) + "%";
      ruler.appendChild(s);
    }
    var bands = $("bands");
    (data.bands || []).forEach(function (b) {
      var w = windows[b[2]] || {};
      var d = el("div", "band", w.title || w.app || "");
      d.style.left = pct(b[0]) + "%";
      d.style.width = Math.max(0, pct(b[1]) - pct(b[0])) + "%";
      d.style.background = winColour(b[2]);
      d.title = (w.app ? w.app + ": " : "") + (w.title || "(no title)") + "\n" + clock(b[0]) + " \u2013 " + clock(b[1]);
      bands.appendChild(d);
    });
    var track = $("spans"), list = $("span-list");
    spans.forEach(function (s) {
      var d = el("div", "span span-" + s.kind, s.kind === "gap" ? "" : s.label);
      d.style.left = pct(s.t0) + "%";
      d.style.width = Math.max(0, pct(s.t1) - pct(s.t0)) + "%";
      d.title = s.label + "\n" + clock(s.t0) + (s.t1 > s.t0 ? " \u2013 " + clock(s.t1) + " (" + duration(s.t1 - s.t0) + ")" : "");
      d.setAttribute("aria-label", d.title);
      d.dataset.t0 = s.t0;
      d.dataset.t1 = s.t1;
      track.appendChild(d);
      var li = el("li", "span-item", clock(s.t0) + (s.t1 > s.t0 ? "\u2013" + clock(s.t1) : "") + "  " + s.label);
      li.addEventListener("click", function () { show(stepAt(s.t0)); });
      list.appendChild(li);
    });
    if (!spans.length) list.appendChild(el("li", "muted", "No pauses, locks, exclusions or gaps."));
    var legend = $("legend");
    [["window focused", "#6b7a99"], ["paused", "var(--pause)"], ["locked", "var(--lock)"],
     ["excluded window", "var(--excl)"], ["gap (data lost)", "var(--gap)"], ["input per second", "var(--accent)"]]
      .forEach(function (l) { var li = el("li", null, l[0]); li.style.setProperty("--c", l[1]); legend.appendChild(li); });
    var box = $("timeline");
    box.setAttribute("aria-valuemax", String(Math.max(steps.length, 1)));
    box.addEventListener("click", function (ev) {
      var r = box.getBoundingClientRect();
      var t = T0 + ((ev.clientX - r.left) / r.width) * (T1 - T0);
      show(stepAt(t));
    });
    drawActivity();
    window.addEventListener("resize", drawActivity);
  }

  function drawActivity() {
    var canvas = $("activity");
    var act = data.activity || { counts: [], bucket_ms: 1000, t0: T0 };
    var ratio = window.devicePixelRatio || 1;
    var w = Math.max(1, Math.round(canvas.clientWidth * ratio)), h = Math.round(48 * ratio);
    canvas.width = w; canvas.height = h;
    var ctx = canvas.getContext("2d");
    if (!ctx) return;
    var cols = new Float64Array(w), max = 0, counts = act.counts || [];
    for (var i = 0; i < counts.length; i++) {
      if (!counts[i]) continue;
      var x = Math.floor(((act.t0 + i * act.bucket_ms - T0) / (T1 - T0)) * w);
      x = Math.min(w - 1, Math.max(0, x));
      if (counts[i] > cols[x]) cols[x] = counts[i];
      if (counts[i] > max) max = counts[i];
    }
    ctx.clearRect(0, 0, w, h);
    ctx.fillStyle = getComputedStyle(document.documentElement).getPropertyValue("--accent") || "#2257d6";
    var barW = Math.max(1, Math.floor((act.bucket_ms / (T1 - T0)) * w));
    for (var c = 0; c < w; c++) {
      if (!cols[c]) continue;
      var bh = Math.max(1, Math.round((cols[c] / max) * (h - 2)));
      ctx.fillRect(c, h - bh, barW, bh);
    }
  }

  function stepAt(t) { // the last step at or before t (the first if none)
    var lo = 0, hi = steps.length - 1, best = 0;
    while (lo <= hi) {
      var mid = (lo + hi) >> 1;
      if (steps[mid].t <= t) { best = mid; lo = mid + 1; } else hi = mid - 1;
    }
    return best;
  }

  /* ---------- step list ---------- */
  function stepWindow(step) {
    if (step.k === "excluded") return "excluded window (not recorded)";
    var w = windows[step.win];
    return w ? (w.app ? w.app + ": " : "") + (w.title || "") : "";
  }

  function stepList() {
    var ol = $("steps");
    var frag = document.createDocumentFragment();
    steps.forEach(function (step, i) {
      var li = el("li");
      li.appendChild(el("span", "t", clock(step.t)));
      li.appendChild(el("span", "k k-" + step.k, step.k.replace("_", " ")));
      var label = el("span", "l", step.label);
      label.title = step.label + "\n" + stepWindow(step);
      li.appendChild(label);
      li.dataset.i = i;
      stepItems.push(li);
      frag.appendChild(li);
    });
    if (!steps.length) frag.appendChild(el("li", "muted", "Nothing was recorded here."));
    ol.appendChild(frag);
    ol.addEventListener("click", function (ev) {
      var li = ev.target.closest ? ev.target.closest("li") : null;
      if (li && li.dataset.i !== undefined) show(Number(li.dataset.i));
    });
    var filter = $("filter");
    filter.addEventListener("input", function () {
      var q = filter.value.trim().toLowerCase();
      if (!q) { shown = null; stepItems.forEach(function (li) { li.hidden = false; }); return; }
      shown = [];
      steps.forEach(function (step, i) {
        var hay = (step.k + " " + step.label + " " + stepWindow(step) + " " + (step.text || "")).toLowerCase();
        var hit = hay.indexOf(q) >= 0;
        stepItems[i].hidden = !hit;
        if (hit) shown.push(i);
      });
    });
  }

  /* ---------- screenshots ---------- */
  function sheet() {
    var box = $("sheet");
    $("sheet-count").textContent = "(" + shots.length + ")";
    if (!shots.length) {
      box.appendChild(el("p", "muted", images.mode === "none" ? "Screenshots are not included in this page." :
        "No screenshots in this part of the session (screenshots are off unless policy turns them on)."));
      return;
    }
    var firstStep = {};
    steps.forEach(function (s, i) { if (s.shot !== undefined && firstStep[s.shot] === undefined) firstStep[s.shot] = i; });
    var observer = "IntersectionObserver" in window ? new IntersectionObserver(function (entries) {
      entries.forEach(function (e) {
        if (!e.isIntersecting) return;
        var img = e.target;
        observer.unobserve(img);
        var url = thumbUrl(shots[Number(img.dataset.shot)]);
        if (url) img.src = url;
      });
    }, { rootMargin: "600px 0px" }) : null;
    var frag = document.createDocumentFragment();
    shots.forEach(function (shot, i) {
      var fig = el("figure", "thumb");
      var img = el("img");
      img.alt = "Screenshot at " + clock(shot.t);
      img.loading = "lazy";
      img.decoding = "async";
      img.dataset.shot = i;
      if (observer) observer.observe(img); else { var u = thumbUrl(shot); if (u) img.src = u; }
      fig.appendChild(img);
      var w = windows[shot.win] || {};
      fig.appendChild(el("figcaption", null, clock(shot.t) + " \u00b7 " + shot.reason + (w.app ? " \u00b7 " + w.app : "")));
      fig.title = (w.title || "") + "\n" + shot.w + "\u00d7" + shot.h;
      fig.addEventListener("click", function () {
        show(firstStep[i] !== undefined ? firstStep[i] : stepAt(shot.t));
        $("stage").scrollIntoView({ block: "nearest" });
      });
      thumbs.push(fig);
      frag.appendChild(fig);
    });
    box.appendChild(frag);
  }

  /* ---------- windows table and details ---------- */
  function windowTable() {
    var perWin = {};
    steps.forEach(function (s) { if (s.win !== undefined) perWin[s.win] = (perWin[s.win] || 0) + 1; });
    var order = windows.map(function (w, i) { return i; })
      .sort(function (a, b) { return (windows[b].focused_ms || 0) - (windows[a].focused_ms || 0); });
    var body = $("windows");
    order.forEach(function (i) {
      var w = windows[i], tr = el("tr");
      var app = el("td");
      var sw = el("span", "swatch");
      sw.style.background = winColour(i);
      app.appendChild(sw);
      app.appendChild(document.createTextNode(w.app || w.process || "?"));
      tr.appendChild(app);
      tr.appendChild(el("td", null, w.title || "(no title)"));
      tr.appendChild(el("td", "num", duration(w.focused_ms || 0)));
      tr.appendChild(el("td", "num", perWin[i] || 0));
      body.appendChild(tr);
    });
    if (!windows.length) {
      var tr = el("tr"), td = el("td", "muted", "No window was recorded.");
      td.colSpan = 4; tr.appendChild(td); body.appendChild(tr);
    }
  }

  function details() {
    var dl = $("details"), sum = data.summary || {};
    var modes = {
      full: "full: typed text after scrubbing, and key kinds",
      redacted: "redacted: key kinds (letter, digit, space, punctuation), shortcuts and special keys",
      shortcuts: "shortcuts and special keys only",
      off: "off: no keys"
    };
    var start = wall(T0);
    var rows = [
      ["session", session.session], ["user", session.user], ["device", session.device],
      ["identity", session.identity], ["organisation", session.org],
      ["start", start ? start.toISOString() + " (" + start.toLocaleString() + ")" : null],
      ["duration", duration(sum.duration_ms || 0)],
      ["keystrokes", modes[session.keystrokes] || session.keystrokes],
      ["agent", session.agent], ["backend", session.backend], ["os", session.os],
      ["screen", (session.screen || []).map(function (m) { return m[2] + "\u00d7" + m[3] + " at " + m[0] + "," + m[1]; }).join("; ")],
      ["keyboard layout", session.keyboard_layout],
      ["chunks", (data.chunks || []).map(function (c) {
        return pad(c.seq, 6) + " (" + bytes(c.bytes) + (c.approved === true ? ", approved" : c.approved === false ? ", waiting for approval" : "") + ")";
      }).join(", ") || String(sum.chunks || "")],
      ["records", (sum.records || 0) + " (" + Object.keys(sum.by_kind || {}).map(function (k) { return k + " " + sum.by_kind[k]; }).join(", ") + ")"],
      ["steps from", data.source === "actions" ? "actions (the action reduction)" : "raw records"],
      ["images", sum.images_missing ? sum.images_missing + " screenshot(s) not stored here any more" : null]
    ];
    rows.forEach(function (r) {
      if (r[1] === undefined || r[1] === null || r[1] === "") return;
      dl.appendChild(el("dt", null, r[0]));
      dl.appendChild(el("dd", null, r[1]));
    });
  }

  /* ---------- the player ---------- */
  function detail(step) {
    var box = $("step-detail");
    box.textContent = "";
    function add(text, cls) { box.appendChild(el("span", cls, text)); }
    var at = step.x !== undefined ? "(" + step.x + ", " + step.y + ")" : "";
    switch (step.k) {
      case "click": case "double_click": case "triple_click": case "right_click":
      case "middle_click": case "release": case "move": add("at " + at); break;
      case "drag": add("from " + at + " to (" + step.to[0] + ", " + step.to[1] + ")"); break;
      case "scroll": add("at " + at); break;
      case "type":
        if (step.keys !== undefined) {
          add(step.keys.replace(/ /g, "\u2423"), "keys");
          add("  " + plural(step.n, "key") + " (" + KEY_WORDS + ")");
        } else {
          add(step.text, "typed");
          add("  as written to disk, after scrubbing");
        }
        break;
      case "text":
        add(step.text, "typed");
        add("  as written to disk, after scrubbing");
        break;
      case "key": case "hotkey": add(step.key, "keys"); break;
      case "excluded": add("Nothing about this window was recorded: no title, keys, pointer or screenshots, until focus moved on."); break;
      case "pause": add("Nothing was recorded until recording resumed."); break;
      case "gap": add("Some records are missing here: " + step.label.replace(/^gap: /, "") + "."); break;
      default: break;
    }
    if (step.text && step.k !== "text" && step.k !== "type") add("  " + step.text, "typed");
    if (step.code) { box.appendChild(el("br")); add(step.code, "code"); }
  }

  function noShot(text) {
    $("shot").removeAttribute("src");
    $("overlay").textContent = "";
    var cap = $("no-shot");
    cap.hidden = false;
    cap.textContent = text;
    $("shot-info").textContent = "";
    $("btn-alt").hidden = true;
    $("stage").style.aspectRatio = "";
    $("stage").style.maxWidth = "";
  }

  function drawStage(step) {
    if (NO_SHOT_STEPS[step.k] && step.shot === undefined) {
      noShot(step.k === "excluded" ? "Excluded window: nothing recorded" :
        step.k === "pause" ? step.label + ": nothing recorded" : step.label);
      return;
    }
    var which = showAlt && step.alt !== undefined ? "alt" : "shot";
    var shot = shots[step[which]];
    var url = imageUrl(shot);
    var altBtn = $("btn-alt");
    altBtn.hidden = step.alt === undefined;
    if (step.alt !== undefined) {
      var otherRole = which === "alt" ? step.shot_role : step.alt_role;
      altBtn.textContent = "show the screen " + (otherRole === "before" ? "before" : "after");
    }
    if (!shot) { noShot(shots.length ? "No screenshot before this step" : "No screenshots in this session"); return; }
    $("no-shot").hidden = true;
    var stage = $("stage");
    stage.style.aspectRatio = shot.w + " / " + shot.h;
    stage.style.maxWidth = "calc(72vh * " + (shot.w / shot.h).toFixed(4) + ")";
    var img = $("shot");
    if (url) img.src = url; else { img.removeAttribute("src"); $("no-shot").hidden = false; $("no-shot").textContent = "This screenshot is not stored here any more"; }
    var info = $("shot-info");
    info.textContent = "";
    var dt = (which === "alt" ? step.alt_dt : step.shot_dt) || 0;
    var role = which === "alt" ? step.alt_role : step.shot_role;
    var when = dt >= 0 ? duration(dt) + " after this step" : duration(-dt) + " before this step";
    if (role === "before" && step.exact && which === "shot") when = "the screen just before this action (taken for it)";
    else if (role === "before") when += " (the screen before it)";
    var line = el("span", dt < -5000 ? "stale" : null,
      "Screenshot at " + clock(shot.t) + " (" + shot.reason + "), " + when + "; " + shot.w + "\u00d7" + shot.h + " px");
    info.appendChild(line);
    overlay(step, shot);
  }

  function overlay(step, shot) {
    var o = $("overlay");
    o.textContent = "";
    o.setAttribute("viewBox", "0 0 " + shot.w + " " + shot.h);
    o.setAttribute("preserveAspectRatio", "none");
    var m = shot.mon, sx = shot.w / (m[2] || shot.w), sy = shot.h / (m[3] || shot.h);
    function px(x, y) { return [(x - m[0]) * sx, (y - m[1]) * sy]; }
    function points(flat) {
      var out = [];
      for (var i = 0; i + 1 < flat.length; i += 2) { var p = px(flat[i], flat[i + 1]); out.push(p[0].toFixed(1) + "," + p[1].toFixed(1)); }
      return out.join(" ");
    }
    var r = Math.max(shot.w, shot.h) / 90;
    var defs = svg("defs", {});
    var marker = svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 8, refY: 5, markerWidth: 5, markerHeight: 5, orient: "auto-start-reverse" });
    marker.appendChild(svg("path", { d: "M0,0 L10,5 L0,10 z", fill: "#f08c00" }));
    defs.appendChild(marker);
    o.appendChild(defs);
    if (step.path && step.path.length >= 4) {
      o.appendChild(svg("polyline", { "class": "pointer-path", points: points(step.path), fill: "none", stroke: "#0b93a8",
        "stroke-width": 2, "stroke-opacity": 0.85, "stroke-dasharray": "6 4", "vector-effect": "non-scaling-stroke" }));
    }
    if (step.drag && step.drag.length >= 4) {
      o.appendChild(svg("polyline", { "class": "drag-path", points: points(step.drag), fill: "none", stroke: "#f08c00",
        "stroke-width": 4, "marker-end": "url(#arrow)", "vector-effect": "non-scaling-stroke" }));
    }
    if (step.x === undefined) return;
    var c = px(step.x, step.y);
    var g = svg("g", { "class": "marker marker-" + step.k, "data-x": step.x, "data-y": step.y });
    if (step.k === "scroll") {
      g.appendChild(svg("circle", { cx: c[0], cy: c[1], r: r, fill: "rgba(11,147,168,.25)", stroke: "#0b93a8", "stroke-width": 3, "vector-effect": "non-scaling-stroke" }));
      g.appendChild(svg("text", { x: c[0], y: c[1] + r * 0.35, "font-size": r, "text-anchor": "middle", fill: "#0b93a8" }, step.dy > 0 ? "\u2191" : step.dy < 0 ? "\u2193" : "\u2194"));
    } else {
      g.setAttribute("id", "click-marker");
      g.appendChild(svg("circle", { cx: c[0], cy: c[1], r: r, fill: "rgba(224,36,94,.18)", stroke: "#e0245e", "stroke-width": 3, "vector-effect": "non-scaling-stroke" }));
      g.appendChild(svg("circle", { cx: c[0], cy: c[1], r: r / 5, fill: "#e0245e" }));
      var tag = (step.button || "").charAt(0).toUpperCase() + (step.n > 1 ? "\u00d7" + step.n : "");
      if (tag) g.appendChild(svg("text", { x: c[0] + r * 1.2, y: c[1] - r * 0.9, "font-size": r * 1.1, fill: "#e0245e", stroke: "#fff", "stroke-width": 0.6, "font-weight": "bold" }, tag));
    }
    o.appendChild(g);
  }

  function show(i) {
    if (!steps.length) {
      $("step-counter").textContent = "No steps";
      noShot("Nothing was recorded here");
      return;
    }
    i = Math.max(0, Math.min(steps.length - 1, i));
    var step = steps[i];
    if (cur >= 0 && stepItems[cur]) stepItems[cur].classList.remove("current");
    if (i !== cur) showAlt = false;
    cur = i;
    var item = stepItems[i];
    item.classList.add("current");
    var list = $("steps");
    var top = item.offsetTop - list.offsetTop;
    if (top < list.scrollTop || top + item.offsetHeight > list.scrollTop + list.clientHeight) {
      list.scrollTop = Math.max(0, top - list.clientHeight / 3);
    }
    $("step-counter").textContent = "Step " + (i + 1) + " / " + steps.length;
    var when = wall(step.t);
    $("step-time").textContent = clock(step.t) + (when ? " \u00b7 " + when.toLocaleTimeString() : "");
    $("step-label").textContent = step.label;
    var w = windows[step.win];
    var chip = $("win-app");
    if (step.k === "excluded") {
      chip.textContent = "excluded";
      chip.style.background = "var(--excl)";
      $("win-title").textContent = "(" + step.cause + " rule: title and content not recorded)";
    } else if (w) {
      chip.textContent = w.app || w.process || "";
      chip.style.background = winColour(step.win);
      $("win-title").textContent = w.title || "(no title)";
    } else {
      chip.textContent = "";
      $("win-title").textContent = "";
    }
    detail(step);
    drawStage(step);
    $("playhead").style.left = pct(step.t) + "%";
    $("timeline").setAttribute("aria-valuenow", String(i + 1));
    if (curThumb !== null && thumbs[curThumb]) thumbs[curThumb].classList.remove("current");
    curThumb = step.shot === undefined ? null : step.shot;
    if (curThumb !== null && thumbs[curThumb]) thumbs[curThumb].classList.add("current");
    if (history.replaceState) {
      try { history.replaceState(null, "", "#step=" + (i + 1)); } catch (e) { /* file: pages in some browsers */ }
    }
  }

  function move(delta) {
    if (!shown) { show(cur + delta); return; }
    if (!shown.length) return;
    var pos;
    if (delta > 0) {
      pos = 0;
      while (pos < shown.length && shown[pos] <= cur) pos++;
      pos += delta - 1;
    } else {
      pos = shown.length - 1;
      while (pos >= 0 && shown[pos] >= cur) pos--;
      pos += delta + 1;
    }
    show(shown[Math.max(0, Math.min(shown.length - 1, pos))]);
  }

  function toggleAlt() {
    if (cur < 0 || steps[cur].alt === undefined) return;
    showAlt = !showAlt;
    drawStage(steps[cur]);
  }

  function jumpSpan(direction) {
    var now = steps[cur] ? steps[cur].t : T0;
    var found = null;
    spans.forEach(function (s) {
      if (direction > 0 && s.t0 > now && (found === null || s.t0 < found)) found = s.t0;
      if (direction < 0 && s.t0 < now && (found === null || s.t0 > found)) found = s.t0;
    });
    if (found !== null) show(stepAt(found));
  }

  function setPlaying(on) {
    var btn = $("btn-play");
    if (playing) { clearTimeout(playing); playing = null; }
    btn.textContent = on ? "\u275a\u275a" : "\u25b6";
    btn.setAttribute("aria-label", on ? "Pause" : "Play");
    if (!on) return;
    var tick = function () {
      if (cur >= steps.length - 1) { setPlaying(false); return; }
      var speed = Number($("speed").value) || 1;
      var wait = Math.min(2000, Math.max(120, (steps[cur + 1].t - steps[cur].t) / speed));
      playing = setTimeout(function () { show(cur + 1); tick(); }, wait);
    };
    if (cur >= steps.length - 1) show(0);
    tick();
  }

  function controls() {
    $("btn-first").addEventListener("click", function () { show(0); });
    $("btn-prev").addEventListener("click", function () { move(-1); });
    $("btn-next").addEventListener("click", function () { move(1); });
    $("btn-last").addEventListener("click", function () { show(steps.length - 1); });
    $("btn-play").addEventListener("click", function () { setPlaying(!playing); });
    $("btn-alt").addEventListener("click", toggleAlt);
    document.addEventListener("keydown", function (ev) {
      var tag = ev.target && ev.target.tagName;
      if (ev.altKey || ev.ctrlKey || ev.metaKey) return;
      if (tag === "INPUT" || tag === "SELECT" || tag === "TEXTAREA") {
        if (ev.key === "Escape") { ev.target.blur(); ev.preventDefault(); }
        return;
      }
      var handled = true;
      switch (ev.key) {
        case "ArrowRight": case "j": move(1); break;
        case "ArrowLeft": case "k": move(-1); break;
        case "PageDown": move(10); break;
        case "PageUp": move(-10); break;
        case "Home": show(0); break;
        case "End": show(steps.length - 1); break;
        case " ": setPlaying(!playing); break;
        case "]": jumpSpan(1); break;
        case "[": jumpSpan(-1); break;
        case "/": $("filter").focus(); break;
        case "a": toggleAlt(); break;
        default: handled = false;
      }
      if (handled) {
        ev.preventDefault();
        if (ev.key !== " " && playing) setPlaying(false);
      }
    });
  }

  function hashStep(fallback) { // #step=N (1-based) links to a step
    var m = /^#step=(\d+)$/.exec(location.hash || "");
    return m ? Number(m[1]) - 1 : fallback;
  }

  function start() {
    header();
    timeline();
    stepList();
    sheet();
    windowTable();
    details();
    controls();
    show(hashStep(0));
    window.addEventListener("hashchange", function () { var i = hashStep(cur); if (i !== cur) show(i); });
    document.documentElement.dataset.ready = "1";
    if (window.performance && performance.mark) performance.mark("replay-ready");
  }

  start();
})();
