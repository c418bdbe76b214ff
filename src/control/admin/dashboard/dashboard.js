// lb's dashboard: polls /api/v1/pools every second, keeps five minutes of samples, draws
// requests/s and latency per backend, and sends the operator's changes (ready / drain / maint /
// remove, register) to the same API. No library, no external request.
'use strict';

const POLL_MS = 1000;
const HISTORY_MS = 5 * 60 * 1000;
const COLORS = ['#2b6cb0', '#c05621', '#2f855a', '#9b2c2c', '#6b46c1', '#b7791f', '#00838f', '#d53f8c'];

const page = {
  token: sessionStorage.getItem('lb-token'),
  authRequired: document.body.dataset.auth === 'token',
  history: new Map(), // pool name -> [{t, backends: {address: {requests, latency}}, responses}]
  cards: new Map(), // pool name -> its elements
  colors: new Map(), // backend address -> color
  timer: null,
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
  document.getElementById('pools').classList.add('hidden');
  document.getElementById('login').classList.remove('hidden');
  document.getElementById('login-error').textContent = message;
  document.getElementById('token-input').focus();
  setStatus('admin token needed');
}

function colorOf(address) {
  if (!page.colors.has(address)) page.colors.set(address, COLORS[page.colors.size % COLORS.length]);
  return page.colors.get(address);
}

// ---- samples and rates -----------------------------------------------------------------

function record(pool, now) {
  const samples = page.history.get(pool.name) || [];
  const backends = {};
  for (const b of pool.backends) backends[b.address] = { requests: b.requests, latency: b.latency_ms };
  samples.push({ t: now, backends, responses: pool.responses });
  while (samples.length && samples[0].t < now - HISTORY_MS) samples.shift();
  page.history.set(pool.name, samples);
  return samples;
}

function rate(samples, i, address) {
  const [a, b] = [samples[i - 1], samples[i]];
  const before = a.backends[address];
  const after = b.backends[address];
  if (!before || !after) return null;
  return Math.max(0, after.requests - before.requests) / ((b.t - a.t) / 1000);
}

function lastRate(samples, address) {
  return samples.length < 2 ? null : rate(samples, samples.length - 1, address);
}

function errorRatio(samples) {
  if (samples.length < 2) return null;
  const [a, b] = [samples[samples.length - 2].responses, samples[samples.length - 1].responses];
  const total = Object.keys(b).reduce((sum, k) => sum + (b[k] - (a[k] || 0)), 0);
  return total > 0 ? (b['5xx'] - (a['5xx'] || 0)) / total : null;
}

// ---- charts ----------------------------------------------------------------------------

function drawChart(canvas, series, unit, now) {
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || 300;
  const height = canvas.clientHeight || 150;
  canvas.width = width * ratio;
  canvas.height = height * ratio;
  const ctx = canvas.getContext('2d');
  ctx.scale(ratio, ratio);
  ctx.clearRect(0, 0, width, height);
  const left = 44;
  const bottom = height - 16;
  let max = 0;
  for (const s of series) for (const [, v] of s.points) max = Math.max(max, v);
  max = max > 0 ? niceCeiling(max) : 1;
  ctx.font = '10px system-ui, sans-serif';
  ctx.fillStyle = '#66707c';
  ctx.strokeStyle = '#dde1e6';
  ctx.lineWidth = 1;
  for (let i = 0; i <= 4; i += 1) {
    const y = 6 + ((bottom - 6) * i) / 4;
    ctx.beginPath();
    ctx.moveTo(left, y);
    ctx.lineTo(width - 4, y);
    ctx.stroke();
    ctx.fillText(format(max * (1 - i / 4)) + unit, 2, y + 3);
  }
  ctx.fillText('-5 min', left, height - 3);
  ctx.fillText('now', width - 24, height - 3);
  const x = (t) => left + ((width - 4 - left) * (t - (now - HISTORY_MS))) / HISTORY_MS;
  const y = (v) => bottom - ((bottom - 6) * v) / max;
  ctx.lineWidth = 1.6;
  for (const s of series) {
    ctx.strokeStyle = s.color;
    ctx.beginPath();
    s.points.forEach(([t, v], i) => (i === 0 ? ctx.moveTo(x(t), y(v)) : ctx.lineTo(x(t), y(v))));
    ctx.stroke();
  }
}

function niceCeiling(v) {
  const power = Math.pow(10, Math.floor(Math.log10(v)));
  for (const step of [1, 2, 2.5, 5, 10]) if (step * power >= v) return step * power;
  return 10 * power;
}

function format(v) {
  if (v >= 1000) return (v / 1000).toFixed(v >= 10000 ? 0 : 1) + 'k';
  if (v >= 10 || v === 0) return v.toFixed(0);
  return v.toFixed(v >= 1 ? 1 : 2);
}

// ---- rendering -------------------------------------------------------------------------

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
      el('div', { class: 'chart' }, el('h3', { text: 'Requests per second' }), rateCanvas),
      el('div', { class: 'chart' }, el('h3', { text: 'Response time (ms, decaying average)' }), latencyCanvas)),
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

function render(pools) {
  const now = Date.now();
  const seen = new Set();
  for (const pool of pools) {
    seen.add(pool.name);
    const samples = record(pool, now);
    const entry = card(pool);
    const present = new Set(pool.backends.map((b) => b.address));
    for (const [address, r] of entry.rowByAddress) {
      if (!present.has(address)) {
        r.tr.remove();
        entry.rowByAddress.delete(address);
      }
    }
    let total = 0;
    let inflight = 0;
    for (const b of pool.backends) {
      const r = row(entry, b);
      const perSecond = lastRate(samples, b.address);
      total += perSecond || 0;
      inflight += b.inflight;
      r.cells.address.textContent = b.address;
      r.cells.source.textContent = b.source;
      r.cells.state.textContent = b.state;
      r.cells.state.className = 'state state-' + b.state;
      r.cells.health.textContent = b.healthy ? 'up' : 'down';
      r.cells.health.className = b.healthy ? 'health-up' : 'health-down';
      r.cells.weight.textContent = b.weight;
      r.cells.inflight.textContent = b.inflight;
      r.cells.rate.textContent = perSecond === null ? '–' : format(perSecond);
      r.cells.requests.textContent = b.requests;
      r.cells.failures.textContent = b.failures;
      r.cells.latency.textContent = b.latency_ms.toFixed(2) + ' ms';
      r.cells.ttl.textContent = b.ttl_remaining_s === null ? '' : b.ttl_remaining_s.toFixed(1) + ' s';
      for (const button of r.actions.querySelectorAll('button[data-state]')) {
        button.classList.toggle('active', button.dataset.state === b.state);
      }
    }
    const errors = errorRatio(samples);
    entry.totals.textContent = '';
    entry.totals.append(
      el('b', { text: format(total) }), ' req/s · ', el('b', { text: String(inflight) }), ' in flight · ',
      el('b', { text: errors === null ? '–' : (errors * 100).toFixed(1) + '%' }), ' 5xx · ',
      el('b', { text: String(pool.queued) }), ' queued');
    const addresses = pool.backends.map((b) => b.address);
    const series = (value) => addresses.map((address) => ({
      color: colorOf(address),
      points: samples.map((s, i) => [s.t, value(samples, i, address)]).filter(([, v]) => v !== null),
    }));
    drawChart(entry.rateCanvas, series((s, i, a) => (i === 0 ? null : rate(s, i, a))), '', now);
    drawChart(entry.latencyCanvas, series((s, i, a) => (s[i].backends[a] ? s[i].backends[a].latency : null)), '', now);
  }
  for (const [name, entry] of page.cards) {
    if (!seen.has(name)) {
      entry.section.remove();
      page.cards.delete(name);
    }
  }
}

// ---- polling ---------------------------------------------------------------------------

async function refresh() {
  try {
    const json = await api('GET', '/api/v1/pools');
    render(json.pools);
    setStatus('updated ' + new Date().toLocaleTimeString());
  } catch (e) {
    if (e.message !== 'the admin token was refused') setStatus('cannot reach lb: ' + e.message, true);
  }
}

function startPolling() {
  document.getElementById('login').classList.add('hidden');
  document.getElementById('pools').classList.remove('hidden');
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
