// lb's dashboard. On opening it reads the pools' last 15 minutes from /api/v1/history (lb keeps
// them, so the charts are full at once); then, every second, the pools, the overview, the
// history's new samples, the events, the routes' splits and the rollouts. It draws requests/s
// and response time per backend, lists pools with problems first, shows each split's weights,
// and sends the operator's changes (ready / drain / maint / remove, register) to the same API;
// the Rollouts card is rollouts.js's. No library, no external request.
'use strict';

const POLL_MS = 1000;
const HISTORY_MS = 15 * 60 * 1000;
// A backend shows a response time only if it served something this recently.
const RECENT_MS = 60 * 1000;
const COLORS = ['#2b6cb0', '#c05621', '#2f855a', '#9b2c2c', '#6b46c1', '#b7791f', '#00838f', '#d53f8c'];

const page = {
  token: sessionStorage.getItem('lb-token'),
  authRequired: document.body.dataset.auth === 'token',
  // The end of each sampled interval (lb's clock, ms since the epoch), oldest first; every
  // series below has one entry per time (null: no value).
  times: [],
  history: new Map(), // pool name -> {p99: [], backends: Map(address -> {rate: [], latency: []})}
  cards: new Map(), // pool name -> its elements
  colors: new Map(), // backend address -> color
  order: '', // the pools' order on the page
  lastEvent: -1, // id of the newest event shown
  timer: null,
  busy: false,
};

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === 'class') node.className = value;
    else if (key === 'text') node.textContent = value;
    else if (key.startsWith('data-')) node.setAttribute(key, value);
    else node[key] = value;
  }
  for (const child of children) node.append(child);
  return node;
}

function setStatus(text, bad = false) {
  const status = document.getElementById('status');
  status.textContent = text;
  status.classList.toggle('bad', bad);
}

async function api(method, path, body) {
  const headers = {};
  if (page.token) headers.Authorization = 'Bearer ' + page.token;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const resp = await fetch(path, {
    method,
    headers,
    cache: 'no-store',
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let json = null;
  try {
    json = await resp.json();
  } catch (_) {
    json = null;
  }
  if (resp.status === 401) {
    askToken('That token was refused.');
    throw new Error('the admin token was refused');
  }
  if (!resp.ok) throw new Error((json && json.error) || resp.status + ' ' + resp.statusText);
  return json;
}

function askToken(message = '') {
  stopPolling();
  document.getElementById('app').classList.add('hidden');
  document.getElementById('login').classList.remove('hidden');
  document.getElementById('login-error').textContent = message;
  document.getElementById('token-input').focus();
  setStatus('admin token needed');
}

function colorOf(address) {
  if (!page.colors.has(address)) page.colors.set(address, COLORS[page.colors.size % COLORS.length]);
  return page.colors.get(address);
}

// ---- numbers -----------------------------------------------------------------------------

function format(v) {
  if (v >= 10000) return (v / 1000).toFixed(0) + 'k';
  if (v >= 1000) return (v / 1000).toFixed(1) + 'k';
  if (v >= 10 || v === 0) return v.toFixed(0);
  return v.toFixed(v >= 1 ? 1 : 2);
}

function ms(v) {
  if (v === null || v === undefined) return '–';
  if (v >= 1000) return (v / 1000).toFixed(2) + ' s';
  return v.toFixed(v >= 100 ? 0 : v >= 10 ? 1 : 2) + ' ms';
}

function percent(ratio) {
  if (ratio === null || ratio === undefined) return '–';
  return (ratio * 100).toFixed(ratio > 0 && ratio < 0.001 ? 2 : 1) + '%';
}

// ---- history -----------------------------------------------------------------------------

function nulls(n) {
  return new Array(n).fill(null);
}

function extend(list, values) {
  for (const v of values) list.push(v);
}

// Adds an answer of /api/v1/history (whole, or since our last time) to page.history.
function merge(answer) {
  const last = page.times.length ? page.times[page.times.length - 1] : -Infinity;
  const skip = answer.times.findIndex((t) => t > last);
  if (skip < 0) return;
  const fresh = (values) => values.slice(skip);
  const known = page.times.length;
  const added = answer.times.length - skip;
  extend(page.times, fresh(answer.times));
  const seen = new Set();
  for (const pool of answer.pools) {
    seen.add(pool.name);
    const h = page.history.get(pool.name) || { p99: nulls(known), backends: new Map() };
    page.history.set(pool.name, h);
    extend(h.p99, fresh(pool.p99_ms));
    const present = new Set();
    for (const b of pool.backends) {
      present.add(b.address);
      const s = h.backends.get(b.address) || { rate: nulls(known), latency: nulls(known) };
      h.backends.set(b.address, s);
      extend(s.rate, fresh(b.requests_per_s));
      extend(s.latency, fresh(b.latency_ms));
    }
    padGone(h, present, added);
  }
  for (const [name, h] of page.history) {
    if (!seen.has(name)) {
      extend(h.p99, nulls(added));
      padGone(h, new Set(), added);
    }
  }
  trim();
}

function padGone(h, present, n) {
  for (const [address, s] of h.backends) {
    if (present.has(address)) continue;
    extend(s.rate, nulls(n));
    extend(s.latency, nulls(n));
  }
}

// Forgets what is older than HISTORY_MS, and series left with nothing.
function trim() {
  const end = page.times[page.times.length - 1];
  let k = 0;
  while (k < page.times.length && page.times[k] <= end - HISTORY_MS) k += 1;
  if (k === 0) return;
  page.times.splice(0, k);
  const empty = (list) => list.every((v) => v === null);
  for (const [name, h] of page.history) {
    h.p99.splice(0, k);
    for (const [address, s] of h.backends) {
      s.rate.splice(0, k);
      s.latency.splice(0, k);
      if (empty(s.rate)) h.backends.delete(address);
    }
    if (h.backends.size === 0 && empty(h.p99)) page.history.delete(name);
  }
}

function points(values) {
  const out = [];
  values.forEach((v, i) => {
    if (v !== null) out.push([page.times[i], v]);
  });
  return out;
}

// The last value of `values` no older than `maxAge` ms, or null.
function latest(values, maxAge = Infinity) {
  const end = page.times[page.times.length - 1];
  for (let i = values.length - 1; i >= 0 && end - page.times[i] <= maxAge; i -= 1) {
    if (values[i] !== null) return values[i];
  }
  return null;
}

// ---- charts ------------------------------------------------------------------------------

// Round ticks from 0 to at least `max`: steps of 1, 2, 2.5 or 5 times a power of ten.
function valueTicks(max) {
  if (!(max > 0)) return { step: 1, top: 1 };
  const raw = max / 4;
  const power = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * power).find((s) => s >= raw);
  return { step, top: Math.ceil(max / step - 1e-9) * step };
}

function decimals(step) {
  for (let d = 0; d < 4; d += 1) {
    const scaled = step * Math.pow(10, d);
    if (Math.abs(scaled - Math.round(scaled)) < 1e-6) return d;
  }
  return 4;
}

// The time axis: a round span (1 to 15 minutes) holding the data, with round ticks.
const SPANS = [
  [60, 15],
  [120, 30],
  [300, 60],
  [600, 120],
  [900, 300],
];

function timeAxis(oldest, end) {
  const seconds = (end - oldest) / 1000;
  const [span, step] = SPANS.find(([s]) => s >= seconds) || SPANS[SPANS.length - 1];
  return { span: span * 1000, step: step * 1000 };
}

function ago(msAgo) {
  if (msAgo === 0) return 'now';
  const s = Math.round(msAgo / 1000);
  return s % 60 === 0 ? s / 60 + ' min ago' : s + ' s ago';
}

function drawChart(canvas, series, unit) {
  const all = series.flatMap((s) => s.points);
  const end = page.times.length ? page.times[page.times.length - 1] : Date.now();
  const oldest = all.length ? Math.min(...all.map(([t]) => t)) : end;
  const peak = all.reduce((m, [, v]) => Math.max(m, v), 0);
  canvas.dataset.samples = String(new Set(all.map(([t]) => t)).size);
  canvas.dataset.oldest = all.length ? String(oldest) : '';
  canvas.dataset.peak = String(peak);

  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || 300;
  const height = canvas.clientHeight || 150;
  canvas.width = width * ratio;
  canvas.height = height * ratio;
  const ctx = canvas.getContext('2d');
  ctx.scale(ratio, ratio);
  ctx.clearRect(0, 0, width, height);
  ctx.font = '10px system-ui, sans-serif';
  const { step, top } = valueTicks(peak);
  const digits = decimals(step);
  const labels = [];
  for (let v = 0; v <= top + step / 2; v += step) labels.push([v, v.toFixed(digits) + ' ' + unit]);
  const left = 6 + Math.max(...labels.map(([, text]) => ctx.measureText(text).width));
  const [right, topY, bottom] = [width - 6, 6, height - 16];
  const y = (v) => bottom - ((bottom - topY) * v) / top;
  const axis = timeAxis(oldest, end);
  const x = (t) => left + ((right - left) * (t - (end - axis.span))) / axis.span;

  ctx.strokeStyle = '#dde1e6';
  ctx.fillStyle = '#66707c';
  ctx.lineWidth = 1;
  for (const [v, text] of labels) {
    ctx.beginPath();
    ctx.moveTo(left, y(v));
    ctx.lineTo(right, y(v));
    ctx.stroke();
    ctx.textAlign = 'right';
    ctx.fillText(text, left - 4, y(v) + 3);
  }
  for (let back = axis.span; back >= 0; back -= axis.step) {
    const tx = x(end - back);
    ctx.beginPath();
    ctx.moveTo(tx, bottom);
    ctx.lineTo(tx, bottom + 3);
    ctx.stroke();
    ctx.textAlign = back === axis.span ? 'left' : back === 0 ? 'right' : 'center';
    ctx.fillText(ago(back), tx, height - 3);
  }
  ctx.lineWidth = 1.6;
  for (const s of series) {
    ctx.strokeStyle = s.color;
    ctx.setLineDash(s.dash || []);
    ctx.beginPath();
    let previous = null;
    for (const [t, v] of s.points) {
      // A gap longer than a few samples is left open.
      if (previous === null || t - previous > 3 * POLL_MS) ctx.moveTo(x(t), y(v));
      else ctx.lineTo(x(t), y(v));
      previous = t;
    }
    ctx.stroke();
  }
  ctx.setLineDash([]);
}

// ---- overview and events -----------------------------------------------------------------

function figure(name, text, value) {
  const node = document.querySelector('#overview [data-figure="' + name + '"]');
  node.textContent = text;
  node.dataset.value = value === null || value === undefined ? '' : String(value);
}

function renderOverview(o) {
  figure('requests_per_s', format(o.requests_per_s) + ' req/s', o.requests_per_s);
  figure('error_ratio', percent(o.error_ratio), o.error_ratio);
  figure('p50_ms', ms(o.p50_ms), o.p50_ms);
  figure('p99_ms', ms(o.p99_ms), o.p99_ms);
  const span = o.window_s >= 59 ? 'the last minute' : 'the last ' + Math.round(o.window_s) + ' s';
  document.getElementById('overview-window').textContent = 'over ' + span;
  const rows = o.pools.map((p) =>
    el('tr', { 'data-pool': p.name, 'data-status': p.status, class: 'status-' + p.status },
      el('td', { text: p.name }),
      el('td', { class: 'pool-status', text: p.status }),
      el('td', { class: 'num', text: format(p.requests_per_s) }),
      el('td', { class: 'num', text: percent(p.error_ratio) }),
      el('td', { class: 'num', text: ms(p.p50_ms) }),
      el('td', { class: 'num', text: ms(p.p99_ms) }),
      el('td', { class: 'num', text: p.up + ' / ' + p.backends }),
      el('td', { class: 'problems', text: p.problems.join(', ') })));
  document.getElementById('overview-pools').replaceChildren(...rows);
}

function clock(at) {
  const d = new Date(at);
  return d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false });
}

function renderEvents(events) {
  const newest = events.length ? events[0].id : 0;
  if (newest === page.lastEvent) return;
  page.lastEvent = newest;
  const items = events.map((e) =>
    el('li', { 'data-kind': e.kind },
      el('time', { text: clock(e.at_ms), dateTime: new Date(e.at_ms).toISOString(), title: new Date(e.at_ms).toString() }),
      el('span', { class: 'kind kind-' + e.kind, text: e.kind }),
      el('span', { class: 'where', text: [e.route, e.pool, e.backend].filter(Boolean).join(' ') }),
      el('span', { class: 'detail', text: e.detail })));
  const list = document.getElementById('events');
  list.replaceChildren(...items);
  document.getElementById('events-empty').classList.toggle('hidden', items.length > 0);
}

// Routes with a split: each side's weight and share, a side without a usable backend marked.
function renderSplits(routes) {
  const rows = routes.filter((r) => r.split).map((r) =>
    el('tr', { 'data-route': r.name || 'routes[' + r.index + ']' },
      el('td', { text: r.name || 'routes[' + r.index + ']', title: r.match }),
      el('td', {}, ...r.split.map((s) =>
        el('span', {
          class: 'side' + (s.usable ? '' : ' unusable'),
          'data-upstream': s.upstream,
          'data-weight': String(s.weight),
          title: s.usable ? 'file weight ' + s.config_weight : 'no usable backend: passed over',
          text: s.upstream + ' ' + s.weight + ' (' + s.share + '%)',
        }))),
      el('td', { text: r.split_by || 'each request' })));
  document.getElementById('splits').replaceChildren(...rows);
  document.getElementById('splits-card').classList.toggle('hidden', rows.length === 0);
}

// ---- pools -------------------------------------------------------------------------------

function card(pool) {
  if (page.cards.has(pool.name)) return page.cards.get(pool.name);
  const totals = el('span', { class: 'totals' });
  const rateCanvas = el('canvas', { 'data-chart': 'rate' });
  const latencyCanvas = el('canvas', { 'data-chart': 'latency' });
  const rows = el('tbody');
  const head = el('tr', {},
    ...['', 'Backend', 'Source', 'State', 'Health', 'Weight', 'In flight', 'Req/s', 'Requests', 'Failures', 'Latency', 'TTL', '']
      .map((h, i) => el('th', { text: h, class: i >= 5 && i <= 11 ? 'num' : '' })));
  const message = el('p', { class: 'message' });
  const form = registerForm(pool.name, message);
  const section = el('section', { class: 'card pool', 'data-pool': pool.name },
    el('div', { class: 'pool-head' },
      el('h2', { text: pool.name }), el('span', { class: 'badge', text: pool.algorithm }), totals),
    el('div', { class: 'charts' },
      el('div', { class: 'chart' }, el('h3', { text: 'Requests per second, per backend' }), rateCanvas),
      el('div', { class: 'chart' },
        el('h3', { text: 'Response time per backend (decaying average); dashed: the pool’s p99' }), latencyCanvas)),
    el('table', {}, el('thead', {}, head), rows),
    form, message);
  section.addEventListener('click', (event) => onAction(event, pool.name, message));
  document.getElementById('pools').append(section);
  const entry = { section, totals, rateCanvas, latencyCanvas, rows, rowByAddress: new Map() };
  page.cards.set(pool.name, entry);
  return entry;
}

function registerForm(poolName, message) {
  const address = el('input', { class: 'addr', placeholder: '10.0.0.5:8080', required: true, name: 'address' });
  const weight = el('input', { class: 'small', type: 'number', min: 1, max: 256, value: 1, name: 'weight' });
  const ttl = el('input', { class: 'small', placeholder: '30s', name: 'ttl' });
  const form = el('form', { class: 'register' },
    el('label', {}, 'Register backend', address),
    el('label', {}, 'Weight', weight),
    el('label', {}, 'TTL (optional)', ttl),
    el('button', { type: 'submit', text: 'Register' }));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const body = { weight: Number(weight.value) || 1 };
    if (ttl.value.trim()) body.ttl = ttl.value.trim();
    await change(message, 'PUT', poolName, address.value.trim(), body, 'registered');
    address.value = '';
    refresh();
  });
  return form;
}

async function change(message, method, poolName, address, body, done) {
  const path = '/api/v1/pools/' + encodeURIComponent(poolName) + '/backends/' + encodeURIComponent(address);
  try {
    await api(method, path, body);
    message.textContent = address + ' ' + done;
    message.className = 'message ok';
  } catch (e) {
    message.textContent = address + ': ' + e.message;
    message.className = 'message bad';
  }
}

async function onAction(event, poolName, message) {
  const button = event.target.closest('button[data-action]');
  if (!button) return;
  const address = button.closest('tr').dataset.backend;
  const action = button.dataset.action;
  if (action === 'remove' && !button.classList.contains('confirm')) {
    button.classList.add('confirm');
    button.textContent = 'Confirm remove';
    return;
  }
  if (action === 'remove') await change(message, 'DELETE', poolName, address, undefined, 'removed');
  else await change(message, 'PATCH', poolName, address, { state: action }, 'is now ' + action);
  refresh();
}

function row(entry, b) {
  let r = entry.rowByAddress.get(b.address);
  if (r) return r;
  const cells = {};
  const cell = (name, cls = '') => (cells[name] = el('td', { class: cls }));
  const actions = el('td', { class: 'actions' },
    ...['ready', 'drain', 'maint'].map((s) => el('button', { type: 'button', text: s[0].toUpperCase() + s.slice(1), 'data-action': s, 'data-state': s })),
    el('button', { type: 'button', text: 'Remove', class: 'danger', 'data-action': 'remove' }));
  const tr = el('tr', { 'data-backend': b.address },
    el('td', {}, el('span', { class: 'swatch' })), cell('address'), cell('source'), cell('state', 'state'), cell('health'),
    cell('weight', 'num'), cell('inflight', 'num'), cell('rate', 'num'), cell('requests', 'num'), cell('failures', 'num'),
    cell('latency', 'num'), cell('ttl', 'num'), actions);
  tr.querySelector('.swatch').style.background = colorOf(b.address);
  entry.rows.append(tr);
  r = { tr, cells, actions };
  entry.rowByAddress.set(b.address, r);
  return r;
}

function fillRow(r, b, series) {
  const rate = series ? latest(series.rate) : null;
  // "–" rather than a decayed average for a backend that served nothing lately.
  const served = b.requests > 0 && series && latest(series.latency, RECENT_MS) !== null;
  r.cells.address.textContent = b.address;
  r.cells.source.textContent = b.source;
  r.cells.state.textContent = b.state;
  r.cells.state.className = 'state state-' + b.state;
  r.cells.health.textContent = b.healthy ? 'up' : 'down';
  r.cells.health.className = b.healthy ? 'health-up' : 'health-down';
  r.cells.weight.textContent = b.weight;
  r.cells.inflight.textContent = b.inflight;
  r.cells.rate.textContent = rate === null ? '–' : format(rate);
  r.cells.requests.textContent = b.requests;
  r.cells.failures.textContent = b.failures;
  r.cells.latency.textContent = served ? ms(b.latency_ms) : '–';
  r.cells.ttl.textContent = b.ttl_remaining_s === null ? '' : b.ttl_remaining_s.toFixed(1) + ' s';
  for (const button of r.actions.querySelectorAll('button[data-state]')) {
    button.classList.toggle('active', button.dataset.state === b.state);
  }
}

function renderPool(pool, summary) {
  const entry = card(pool);
  const h = page.history.get(pool.name) || { p99: [], backends: new Map() };
  const present = new Set(pool.backends.map((b) => b.address));
  for (const [address, r] of entry.rowByAddress) {
    if (!present.has(address)) {
      r.tr.remove();
      entry.rowByAddress.delete(address);
    }
  }
  let inflight = 0;
  for (const b of pool.backends) {
    fillRow(row(entry, b), b, h.backends.get(b.address));
    inflight += b.inflight;
  }
  entry.totals.replaceChildren(
    el('b', { text: summary ? format(summary.requests_per_s) : '–' }), ' req/s · ',
    el('b', { text: summary ? percent(summary.error_ratio) : '–' }), ' 5xx · ',
    el('b', { text: String(inflight) }), ' in flight · ', el('b', { text: String(pool.queued) }), ' queued');
  const series = (key) => pool.backends.map((b) => ({
    color: colorOf(b.address),
    points: h.backends.has(b.address) ? points(h.backends.get(b.address)[key]) : [],
  }));
  drawChart(entry.rateCanvas, series('rate'), 'req/s');
  const p99 = { color: '#66707c', dash: [4, 3], points: points(h.p99) };
  drawChart(entry.latencyCanvas, series('latency').concat([p99]), 'ms');
}

function render(pools, overview) {
  renderOverview(overview);
  const summaries = new Map(overview.pools.map((p) => [p.name, p]));
  for (const pool of pools) renderPool(pool, summaries.get(pool.name));
  const names = new Set(pools.map((p) => p.name));
  for (const [name, entry] of page.cards) {
    if (!names.has(name)) {
      entry.section.remove();
      page.cards.delete(name);
    }
  }
  // The overview's order: pools with problems first, idle ones last.
  const order = overview.pools.map((p) => p.name).filter((name) => page.cards.has(name));
  if (order.join('\n') !== page.order) {
    const main = document.getElementById('pools');
    for (const name of order) main.append(page.cards.get(name).section);
    page.order = order.join('\n');
  }
}

// ---- polling -----------------------------------------------------------------------------

async function refresh() {
  if (page.busy) return;
  page.busy = true;
  try {
    const since = page.times.length ? '?since=' + page.times[page.times.length - 1] : '';
    const asked = performance.now();
    const [pools, overview, history, events, routes, rollouts] = await Promise.all([
      api('GET', '/api/v1/pools'),
      api('GET', '/api/v1/overview'),
      api('GET', '/api/v1/history' + since),
      api('GET', '/api/v1/events'),
      api('GET', '/api/v1/routes'),
      api('GET', '/api/v1/rollouts'),
    ]);
    merge(history);
    render(pools.pools, overview);
    renderSplits(routes.routes);
    renderRollouts(rollouts.rollouts, asked); // rollouts.js
    renderEvents(events.events);
    setStatus('updated ' + new Date().toLocaleTimeString());
  } catch (e) {
    if (e.message !== 'the admin token was refused') setStatus('cannot reach lb: ' + e.message, true);
  } finally {
    page.busy = false;
  }
}

function startPolling() {
  document.getElementById('login').classList.add('hidden');
  document.getElementById('app').classList.remove('hidden');
  document.getElementById('forget').classList.toggle('hidden', !page.token);
  stopPolling();
  refresh();
  page.timer = setInterval(refresh, POLL_MS);
}

function stopPolling() {
  if (page.timer) clearInterval(page.timer);
  page.timer = null;
}

document.getElementById('login').addEventListener('submit', (event) => {
  event.preventDefault();
  page.token = document.getElementById('token-input').value.trim();
  sessionStorage.setItem('lb-token', page.token);
  startPolling();
});

document.getElementById('forget').addEventListener('click', () => {
  sessionStorage.removeItem('lb-token');
  page.token = null;
  askToken();
});

if (page.authRequired && !page.token) askToken();
else startPolling();
