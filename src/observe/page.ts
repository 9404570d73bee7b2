/**
 * The dashboard page: one self-contained HTML document (no CDN, no build step, works
 * offline), read-only. It listens to /api/events (server-sent events: one push per look at
 * the servers, however many pages are open) and draws with the DOM and inline SVG. Every
 * text from the servers goes in through textContent, never as HTML: table names are data.
 * (Plain JavaScript in a string: keep it free of backquotes and dollar-braces.)
 */
export const DASHBOARD_PAGE = `<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>pgconvoy</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1c2430}
header{background:#1c2430;color:#fff;padding:10px 20px;display:flex;gap:20px;align-items:baseline;flex-wrap:wrap}
header h1{font-size:18px;margin:0}
main{padding:12px 20px;display:grid;gap:12px;grid-template-columns:repeat(auto-fit,minmax(420px,1fr))}
section{background:#fff;border:1px solid #dde1e6;border-radius:6px;padding:10px 14px;overflow:auto}
section.wide{grid-column:1/-1}
h2{font-size:15px;margin:0 0 8px}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:3px 8px;border-bottom:1px solid #eef0f3;white-space:nowrap}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
.bar{height:14px;background:#e5e8ec;border-radius:7px;overflow:hidden}
.bar>div{height:100%;background:#2f7d4f}
.state-done{color:#2f7d4f}.state-failed,.error{color:#b3261e}.state-copying{color:#1d5fa8}
.hint{color:#555;margin:2px 0 8px 12px}
.warn{color:#8a5a00}
.next{background:#eef6ff;border-left:4px solid #1d5fa8;padding:6px 10px}
.muted{color:#6b7480}
svg{width:100%;height:140px;background:#fbfcfd}
#log{font:12px ui-monospace,monospace;max-height:260px;overflow:auto;white-space:pre-wrap}
a{color:#1d5fa8}
</style></head>
<body>
<header><h1>pgconvoy</h1><span id="what" class="muted"></span><span id="phase" data-testid="phase"></span>
<span id="updated" class="muted"></span></header>
<main id="main"><section class="wide"><p class="muted">waiting for the first look at the ledger…</p></section></main>
<script>
(function () {
  'use strict';
  var params = new URLSearchParams(location.search);
  var token = params.get('token');
  var chosen = params.get('db');
  var q = token ? '?token=' + encodeURIComponent(token) : '';

  function el(tag, attrs, kids) {
    var e = document.createElement(tag);
    for (var k in attrs || {}) {
      if (k === 'text') e.textContent = attrs[k];
      else e.setAttribute(k, attrs[k]);
    }
    (kids || []).forEach(function (c) { if (c) e.appendChild(typeof c === 'string' ? document.createTextNode(c) : c); });
    return e;
  }
  function bytes(n) {
    if (n === undefined || n === null || !isFinite(n)) return '?';
    var u = ['B', 'kB', 'MB', 'GB', 'TB'], i = 0;
    while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
    return (i === 0 ? n : n.toFixed(n < 10 ? 1 : 0)) + ' ' + u[i];
  }
  function secs(s) {
    if (s === undefined || s === null || !isFinite(s)) return '?';
    if (s < 60) return s.toFixed(1) + ' s';
    var m = Math.floor(s / 60);
    if (m < 60) return m + 'm' + String(Math.round(s % 60)).padStart(2, '0') + 's';
    return Math.floor(m / 60) + 'h' + String(m % 60).padStart(2, '0') + 'm';
  }
  function count(n) { return n === undefined || n === null ? '?' : Number(n).toLocaleString('en-US'); }
  function section(title, id, wide, kids) {
    return el('section', { id: id, 'data-testid': id, class: wide ? 'wide' : '' }, [el('h2', { text: title })].concat(kids));
  }
  function grid(head, rows, numeric) {
    return el('table', {}, [
      el('thead', {}, [el('tr', {}, head.map(function (h, i) { return el('th', { text: h, class: numeric[i] ? 'num' : '' }); }))]),
      el('tbody', {}, rows.map(function (r) {
        return el('tr', r.attrs || {}, r.cells.map(function (c, i) {
          return el('td', { text: String(c), class: (numeric[i] ? 'num ' : '') + (r.classes && r.classes[i] || '') });
        }));
      }))
    ]);
  }
  function chart(id, points, label, fmt) {
    var ns = 'http://www.w3.org/2000/svg';
    var svg = document.createElementNS(ns, 'svg');
    svg.setAttribute('viewBox', '0 0 600 140');
    svg.setAttribute('preserveAspectRatio', 'none');
    svg.setAttribute('data-testid', id);
    svg.setAttribute('data-points', String(points.length));
    var max = points.reduce(function (m, p) { return Math.max(m, p[1]); }, 0);
    if (points.length > 1) {
      var t0 = points[0][0], t1 = points[points.length - 1][0] || t0 + 1;
      var line = document.createElementNS(ns, 'polyline');
      line.setAttribute('fill', 'none');
      line.setAttribute('stroke', '#1d5fa8');
      line.setAttribute('stroke-width', '2');
      line.setAttribute('points', points.map(function (p) {
        return ((p[0] - t0) / Math.max(1, t1 - t0) * 590 + 5).toFixed(1) + ',' + (130 - (max ? p[1] / max : 0) * 120).toFixed(1);
      }).join(' '));
      svg.appendChild(line);
    }
    var caption = el('div', { class: 'muted', text: label + ' (max ' + fmt(max) + ', ' + points.length + ' points)' });
    return el('div', {}, [svg, caption]);
  }
  function throughputPoints(h) {
    var out = [];
    for (var i = 1; i < h.length; i++) {
      var dt = (h[i].t - h[i - 1].t) / 1000;
      if (dt > 0) out.push([h[i].t, Math.max(0, (h[i].bytes - h[i - 1].bytes) / dt)]);
    }
    return out;
  }

  function relayRates(h) {
    var out = [];
    for (var i = 1; i < h.length; i++) {
      var dt = (h[i].t - h[i - 1].t) / 1000, a = h[i - 1].relayChanges, b = h[i].relayChanges;
      if (dt > 0 && a !== undefined && a !== null && b !== undefined && b !== null) out.push([h[i].t, Math.max(0, (b - a) / dt)]);
    }
    return out;
  }

  function overview(doc) {
    var rows = doc.databases.map(function (d) {
      var s = d.snapshot || {};
      return { cells: [d.database, s.phase || (d.error ? 'unreachable' : '?'), d.progress === undefined ? '?' : Math.round(d.progress * 100) + '%',
        s.online && s.online.lagBytes !== undefined ? bytes(s.online.lagBytes) : '', d.error ? d.error.message : (s.next || '')] };
    });
    var t = grid(['DATABASE', 'PHASE', 'PROGRESS', 'LAG', 'NEXT / ERROR'], rows, [0, 0, 1, 1, 0]);
    Array.prototype.forEach.call(t.querySelectorAll('tbody tr'), function (tr, i) {
      var name = doc.databases[i].database, cell = tr.firstChild;
      cell.textContent = '';
      cell.appendChild(el('a', { href: '?db=' + encodeURIComponent(name) + (token ? '&token=' + encodeURIComponent(token) : ''), text: name }));
    });
    return [section('Databases', 'databases', true, [t])];
  }

  function errorsSection(d, s, live) {
    var kids = [];
    if (d.error) { kids.push(el('div', { class: 'error', text: d.error.message })); if (d.error.hint) kids.push(el('div', { class: 'hint', text: 'hint: ' + d.error.hint })); }
    (s.failed || []).forEach(function (f) {
      kids.push(el('div', { class: 'error', text: f.table + ' ' + f.chunk + ' failed after ' + f.attempts + ' attempt(s): ' + f.error }));
      kids.push(el('div', { class: 'hint', text: 'hint: fix the cause, then run the same command again: failed jobs are retried, done ones are kept' }));
    });
    (live ? live.errors : []).forEach(function (e) {
      if (e.code === 'JOB_FAILED') return;
      kids.push(el('div', { class: 'error', text: e.code + ': ' + e.message }));
      if (e.hint) kids.push(el('div', { class: 'hint', text: 'hint: ' + e.hint }));
    });
    ((s.online && s.online.warnings) || []).forEach(function (w) { kids.push(el('div', { class: 'warn', text: 'warning: ' + w })); });
    return kids.length ? section('Errors and warnings', 'errors', true, kids) : null;
  }

  function database(doc, d) {
    var s = d.snapshot || { tables: [], counts: {}, workers: [] };
    var live = d.live;
    var out = [];
    document.getElementById('phase').textContent = s.phase || '';
    document.getElementById('what').textContent = doc.command + ': ' + (s.source || '?') + ' → ' + d.target;
    if (s.next) out.push(el('section', { class: 'wide next', 'data-testid': 'next' }, [el('b', { text: 'Next: ' }), s.next]));
    out.push(errorsSection(d, s, live));
    var pct = d.progress === undefined ? 0 : d.progress * 100;
    out.push(section('Progress', 'progress', true, [
      el('div', { class: 'bar' }, [el('div', { style: 'width:' + pct.toFixed(1) + '%' })]),
      el('p', { 'data-testid': 'summary', text: pct.toFixed(0) + '%  ·  ' + count(s.rowsDone) + ' rows, ' + bytes(s.bytesDone) + ' copied of ~' + bytes(s.bytesEstimated) +
        '  ·  jobs ' + count(s.counts.done) + '/' + count(s.counts.total) + ' done, ' + count(s.counts.running) + ' running, ' + count(s.counts.failed) + ' failed' +
        '  ·  ' + (d.throughputBytesPerSecond === undefined ? '' : bytes(d.throughputBytesPerSecond) + '/s') + '  ·  ETA ' + (d.etaSeconds === undefined ? '?' : secs(d.etaSeconds)) }),
    ]));
    out.push(section('Tables', 'tables', true, [grid(['TABLE', 'ROWS', 'BYTES', 'CHUNKS', 'STATE', 'SECONDS', 'INDEXES'],
      s.tables.map(function (t) {
        var total = t.jobs.pending + t.jobs.running + t.jobs.done + t.jobs.failed;
        return { attrs: { 'data-table': t.display, 'data-state': t.state }, classes: ['', '', '', '', 'state-' + t.state],
          cells: [t.display, count(t.rows), bytes(t.bytes), t.jobs.done + '/' + total, t.state, t.seconds.toFixed(1), t.indexed ? 'built' : ''] };
      }), [0, 1, 1, 1, 0, 1, 0])]));
    var workers = (d.workers || []).map(function (w) { return { cells: [w.worker, w.what, w.since ? new Date(w.since).toLocaleTimeString() : ''] }; });
    out.push(section('Workers now', 'workers', false, [workers.length ? grid(['WORKER', 'COPYING', 'SINCE'], workers, [0, 0, 0]) : el('p', { class: 'muted', text: 'no job running' })]));
    out.push(section('Throughput', 'throughput', false, [chart('throughput-chart', throughputPoints(d.history), 'bytes per second', function (v) { return bytes(v) + '/s'; })]));
    var o = s.online;
    if (o) {
      out.push(section('Replication', 'replication', false, [
        el('p', { text: 'phase ' + o.phase + (o.since ? ' since ' + o.since : '') + '; slot ' + o.slot + (o.slotActive === undefined ? '' : o.slotActive ? ' (active)' : ' (INACTIVE)') }),
        el('p', { 'data-testid': 'lag', text: 'lag ' + bytes(o.lagBytes) + ', ' + secs(o.lagSeconds) + '; WAL kept by the slot ' + bytes(o.retainedWalBytes) }),
        o.writesBlockedSeconds === undefined ? null : el('p', { text: (o.frozen ? 'source frozen: writes blocked for ' : 'writes were blocked for ') + secs(o.writesBlockedSeconds) }),
        chart('lag-chart', d.history.filter(function (p) { return p.lagBytes !== undefined && p.lagBytes !== null; }).map(function (p) { return [p.t, p.lagBytes]; }), 'replication lag, bytes', bytes),
      ]));
    }
    var r = s.relay;
    if (r) {
      var rl = live && live.relay;
      out.push(section('Relay', 'relay', false, [
        el('p', { 'data-testid': 'relay-applied', text: 'applied up to ' + r.appliedLsn + ' at ' + r.appliedAt.slice(11, 19) + '; ' + count(r.changes) + ' changes in ' + count(r.transactions) + ' transactions' }),
        el('p', { 'data-testid': 'relay-rate', text: (d.relayChangesPerSecond === undefined ? '?' : count(Math.round(d.relayChangesPerSecond))) + ' changes/s' +
          (rl ? '; received, not yet committed: ' + bytes(rl.lagBytes) + ', ' + secs(rl.lagSeconds) : '') +
          (r.running === undefined ? '' : r.running ? '; streaming' : '; NOT RUNNING') + (r.by ? ' (' + r.by + ')' : '') }),
        r.stopped ? el('div', { class: 'warn', text: 'stopped: ' + r.stopped }) : null,
        chart('relay-chart', relayRates(d.history), 'changes applied per second', function (v) { return count(Math.round(v)) + '/s'; }),
      ]));
    }
    var built = live ? live.indexBuilds : [];
    out.push(section('Index builds', 'indexes', false, [el('p', { text: s.tables.filter(function (t) { return t.indexed; }).length + ' of ' + s.tables.length + ' table(s) indexed' }),
      built.length ? grid(['TABLE', 'ITEMS', 'SECONDS'], built.map(function (b) { return { cells: [b.table, b.items, b.seconds.toFixed(1)] }; }), [0, 1, 1]) : null]));
    if (live && live.cutoverSteps.length) out.push(section('Cutover', 'cutover', false, [grid(['STEP', 'STATE', 'MS'], live.cutoverSteps.map(function (c) { return { cells: [c.step, c.state, c.ms === undefined ? '' : c.ms] }; }), [0, 0, 1])]));
    if (live && live.verify) {
      var v = live.verify;
      out.push(section('Verify', 'verify', false, [el('p', { text: v.tablesDone + '/' + v.tablesTotal + ' table(s) compared, ' + v.chunksChecked + ' chunk(s), ' + v.tablesDiffering + ' differing' })]
        .concat(v.differing.map(function (x) { return el('div', { class: 'error', text: x }); }))));
    }
    if (live) out.push(section('Event log', 'events', true, [el('div', { id: 'log', text: live.events.slice().reverse().map(function (e) { return e.at.slice(11, 19) + ' ' + e.level + ' ' + e.message; }).join('\\n') })]));
    return out;
  }

  function render(doc) {
    var main = document.getElementById('main');
    var d = doc.databases.length === 1 ? doc.databases[0] : doc.databases.filter(function (x) { return x.database === chosen; })[0];
    var parts = d ? database(doc, d) : overview(doc);
    main.textContent = '';
    parts.forEach(function (p) { if (p) main.appendChild(p); });
    document.getElementById('updated').textContent = 'updated ' + new Date().toLocaleTimeString();
    window.pgconvoyStatus = doc;
  }

  var source = new EventSource('/api/events' + q);
  source.onmessage = function (m) { render(JSON.parse(m.data)); };
  source.onerror = function () { document.getElementById('updated').textContent = 'disconnected (the pgconvoy process ended?); retrying…'; };
})();
</script>
</body></html>
`;
