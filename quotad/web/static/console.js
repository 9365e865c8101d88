/* quotad console: the curves (uPlot) and the live stream (server-sent events). No inline script: CSP forbids it. */
(function () {
  "use strict";
  var $ = function (id) { return document.getElementById(id); };
  var fmt = function (v) { return v == null ? "—" : Math.round(v).toLocaleString("en-US"); };
  var pct = function (v) { return v == null ? "—" : Math.round(v * 100) + "%"; };

  function width(el) { return Math.max(280, el.clientWidth || 320); }

  function hm(tz) {
    var f = new Intl.DateTimeFormat("zh-CN", { hour: "2-digit", minute: "2-digit", hour12: false, timeZone: tz || undefined });
    return function (u, splits) { return splits.map(function (s) { return f.format(new Date(s * 1e3)); }); };
  }

  function md(tz) {
    var f = new Intl.DateTimeFormat("zh-CN", { month: "numeric", day: "numeric", timeZone: tz || undefined });
    return function (u, splits) { return splits.map(function (s) { return f.format(new Date(s * 1e3)); }); };
  }

  function tzOpts() {
    return { legend: { live: false }, cursor: { points: { show: false } } };
  }

  function shareBar(share) {
    var bar = $("sharebar");
    if (bar) { bar.style.width = Math.min(100, (share || 0) * 100) + "%"; }
  }

  // -- today ---------------------------------------------------------------------------------
  var charts = {};

  function drawToday(d) {
    var curveEl = $("curve"), loadEl = $("load");
    if (!curveEl || typeof uPlot === "undefined") { return; }
    var xs = [d.day_start], used = [0], cap = [], proj = [null];
    d.curve.forEach(function (p) { xs.push(p[0]); used.push(p[1]); proj.push(null); });
    if (d.projection.length === 2) {
      proj[proj.length - 1] = d.projection[0][1];
      xs.push(d.projection[1][0]); used.push(null); proj.push(d.projection[1][1]);
    } else if (xs[xs.length - 1] < d.day_end) {
      xs.push(d.day_end); used.push(null); proj.push(null);
    }
    xs.forEach(function () { cap.push(d.cap_kwh); });
    var opts = Object.assign({
      width: width(curveEl), height: 240,
      scales: { x: { time: true }, y: { range: function (u, lo, hi) { return [0, Math.max(hi, d.cap_kwh || 0) * 1.05]; } } },
      axes: [{ values: hm(d.tz) }, { size: 60, values: function (u, vals) { return vals.map(fmt); } }],
      series: [
        { label: "时间" },
        { label: "累计用电 kWh", stroke: "#1c64f2", width: 2, fill: "rgba(28,100,242,0.08)", points: { show: false } },
        { label: "日上限", stroke: "#c92a2a", width: 1.5, dash: [6, 4], points: { show: false } },
        { label: "预计全天", stroke: "#d9480f", width: 1.5, dash: [2, 4], spanGaps: true, points: { show: false } }
      ]
    }, tzOpts());
    if (charts.curve) { charts.curve.destroy(); }
    charts.curve = new uPlot(opts, [xs, used, cap, proj], curveEl);
    if (loadEl) {
      var lx = [], ly = [], lc = [];
      d.load.forEach(function (p) { lx.push(p[0]); ly.push(p[1]); lc.push(d.load_cap_kw); });
      if (!lx.length || lx[lx.length - 1] < d.day_end) { lx.push(d.day_end); ly.push(null); lc.push(d.load_cap_kw); }
      var lopts = Object.assign({
        width: width(loadEl), height: 180,
        scales: { x: { time: true, range: [d.day_start, d.day_end] } },
        axes: [{ values: hm(d.tz) }, { size: 60, values: function (u, vals) { return vals.map(fmt); } }],
        series: [
          { label: "时间" },
          { label: "负荷 kW", stroke: "#1f8a4c", fill: "rgba(31,138,76,0.35)", paths: uPlot.paths.bars({ size: [0.9, 40] }), points: { show: false } },
          { label: "负荷上限 kW", stroke: "#c92a2a", dash: [6, 4], width: 1.5, points: { show: false } }
        ]
      }, tzOpts());
      if (charts.load) { charts.load.destroy(); }
      charts.load = new uPlot(lopts, [lx, ly, lc], loadEl);
    }
  }

  function updateToday(d) {
    $("consumed").textContent = fmt(d.consumed_kwh);
    $("projected").textContent = fmt(d.projected_kwh);
    $("share").textContent = pct(d.share);
    $("updated").textContent = d.updated.slice(5, 16).replace("T", " ");
    Object.keys(d.states).forEach(function (k) { var el = $("state-" + k); if (el) { el.textContent = d.states[k]; } });
    shareBar(d.share);
    drawToday(d);
  }

  var todayData = $("today-data");
  if (todayData) {
    var d = JSON.parse(todayData.textContent);
    var bar = $("sharebar");
    shareBar(bar ? parseFloat(bar.getAttribute("data-share")) : d.share);
    drawToday(d);
    var resized;
    window.addEventListener("resize", function () { clearTimeout(resized); resized = setTimeout(function () { drawToday(d); }, 200); });
    var es = new EventSource("/events?today=1");
    es.addEventListener("today", function (e) { d = JSON.parse(e.data); updateToday(d); });
    es.addEventListener("reload", function () { location.reload(); });
  }

  // -- one firm ------------------------------------------------------------------------------
  var firmData = $("firm-data"), firmEl = $("firmcurve");
  if (firmData && firmEl && typeof uPlot !== "undefined") {
    var f = JSON.parse(firmData.textContent);
    var lim = f.days.map(function () { return f.limit; });
    new uPlot(Object.assign({
      width: width(firmEl), height: 180,
      scales: { x: { time: true } },
      axes: [{ values: md(f.tz) }, { size: 60, values: function (u, vals) { return vals.map(fmt); } }],
      series: [
        { label: "日期" },
        { label: "日用电 kWh", stroke: "#1c64f2", fill: "rgba(28,100,242,0.3)", paths: uPlot.paths.bars({ size: [0.7, 30] }), points: { show: false } },
        { label: "日限额 kWh", stroke: "#c92a2a", dash: [6, 4], width: 1.5, points: { show: false } }
      ]
    }, tzOpts()), [f.days, f.used, lim], firmEl);
  }

  // -- alerts, live --------------------------------------------------------------------------
  var list = $("alerts");
  if (list && list.hasAttribute("data-last")) {
    var want = { severity: list.getAttribute("data-severity"), firm: list.getAttribute("data-firm"), rule: list.getAttribute("data-rule") };
    var stream = new EventSource("/events?after=" + encodeURIComponent(list.getAttribute("data-last")));
    stream.onopen = function () { $("live").hidden = false; };
    stream.onerror = function () { $("live").hidden = true; };
    stream.addEventListener("reload", function () { location.reload(); });
    stream.addEventListener("alert", function (e) {
      var a = JSON.parse(e.data);
      if ((want.severity && a.severity !== want.severity) || (want.firm && a.firm !== want.firm) || (want.rule && a.rule !== want.rule)) { return; }
      var none = $("none"); if (none) { none.remove(); }
      var li = document.createElement("li");
      li.className = "fresh sev-" + a.severity;
      li.setAttribute("data-id", a.id);
      var sev = document.createElement("span"); sev.className = "sev"; sev.textContent = a.severity_name;
      var t = document.createElement("time"); t.textContent = (a.ts || "").slice(5, 16).replace("T", " ");
      li.appendChild(sev); li.appendChild(document.createTextNode(" ")); li.appendChild(t); li.appendChild(document.createTextNode(" "));
      if (a.firm) { var l = document.createElement("a"); l.href = "/firms/" + encodeURIComponent(a.firm); l.textContent = a.firm_name; li.appendChild(l); }
      else { li.appendChild(document.createTextNode("全镇")); }
      li.appendChild(document.createTextNode(" " + a.message));
      list.insertBefore(li, list.firstChild);
    });
  }
})();
