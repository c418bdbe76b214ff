// lb's dashboard, its Rollouts card: every rollout of /api/v1/rollouts (running and ended) as a
// row with its pools, phase, step and the candidate's share, the figures of the gates' current
// window side by side (baseline and candidate: requests, 5xx, p99), the shadow's comparisons and
// the operator's buttons that apply to its phase (Abort and Promote are confirmed first); under
// it, why it ended, its last move and its last differing answers. dashboard.js polls and calls
// renderRollouts with the rest; this file uses its el, api, ms, clock and refresh, and is loaded
// before it. Text from the API is only ever set as text.
'use strict';

// Differing answers listed per rollout, newest first (lb keeps the last 20).
const DIVERGENCES_SHOWN = 5;
// Phases in which the driver moves a rollout on, and those in which it still shapes traffic.
const RUNNING_PHASES = ['shadow', 'steps'];
const ACTIVE_PHASES = ['shadow', 'steps', 'held'];
const ROLLOUT_COLUMNS = 8;
// The requests each side needs in a window before its p99 is judged (lb's P99_MIN_REQUESTS).
const P99_MIN_REQUESTS = 100;
const ACTION_LABELS = { pause: 'Pause', resume: 'Resume', abort: 'Abort', promote: 'Promote' };
const ACTION_DONE = { pause: 'paused', resume: 'resumed', abort: 'aborted', promote: 'promoted' };

const rolloutCard = {
  // route -> {tr, detail, cells, view, actions (the buttons' key), actedAt (when an action's
  // answer was shown, performance.now())}
  rows: new Map(),
  order: '', // the routes' order on the page
};

// The actions that apply to rollout `r` now.
function rolloutActions(r) {
  const out = [];
  if (RUNNING_PHASES.includes(r.phase) && !r.paused) out.push('pause');
  if (ACTIVE_PHASES.includes(r.phase) && r.paused) out.push('resume');
  if (ACTIVE_PHASES.includes(r.phase)) out.push('abort', 'promote');
  return out;
}

// What the operator is asked before `action`, or null when it needs no confirmation.
function rolloutQuestion(action, r) {
  const { baseline, candidate } = r.spec;
  if (action === 'abort') {
    return 'Abort the rollout of route ' + r.route + '? ' + candidate + ' loses its share of the route at once.';
  }
  if (action === 'promote') {
    return 'Promote ' + candidate + ' on route ' + r.route + ' now? It takes all of the route\'s requests; ' +
      baseline + ' gets none.';
  }
  return null;
}

function shareText(share) {
  return Math.round(share * 100) / 100 + '%';
}

function errorText(side) {
  return side.requests ? ((side.errors * 100) / side.requests).toFixed(2) + '%' : '–';
}

function rolloutEntry(route) {
  if (rolloutCard.rows.has(route)) return rolloutCard.rows.get(route);
  const cells = {};
  const cell = (name, cls = name) => (cells[name] = el('td', { class: cls }));
  const tr = el('tr', { 'data-route': route },
    el('td', { class: 'route', text: route }), cell('pools'), cell('phase'), cell('step', 'step num'),
    cell('share', 'share num'), cell('gates'), cell('shadow'), cell('actions'));
  const detail = el('tr', { class: 'rollout-detail', 'data-detail': route }, cell('detail'));
  cells.detail.colSpan = ROLLOUT_COLUMNS;
  const entry = { tr, detail, cells, view: null, actions: null, actedAt: -Infinity };
  rolloutCard.rows.set(route, entry);
  return entry;
}

// The gates' figures of the current window, baseline and candidate side by side.
function gateFigures(r) {
  const w = r.window;
  const side = (name, pool, f) => el('tr', { 'data-side': name },
    el('th', { text: pool, title: name }),
    el('td', { class: 'num', 'data-figure': 'requests', text: f ? String(f.requests) : '–' }),
    el('td', { class: 'num', 'data-figure': 'errors', text: f ? errorText(f) : '–' }),
    el('td', { class: 'num', 'data-figure': 'p99', text: f ? ms(f.p99_ms) : '–' }));
  const g = r.spec.gates;
  const limits = 'judged after ' + g.min_requests + ' requests: 5xx at most ' + g.max_error_ratio_delta +
    ' over the baseline\'s, p99 at most ' + g.max_p99_ratio + '× its (once each side has ' + P99_MIN_REQUESTS + ')';
  let note = limits;
  if (!w && !ACTIVE_PHASES.includes(r.phase)) note = 'ended';
  else if (!w && r.phase === 'held') note = 'held: no longer judged';
  else if (!w) note = 'judged by the instance that drives it';
  return [
    el('table', { class: 'gates' },
      el('thead', {}, el('tr', {}, ...['', 'Requests', '5xx', 'p99'].map((h) => el('th', { text: h, class: h ? 'num' : '' })))),
      el('tbody', {}, side('baseline', r.spec.baseline, w && w.baseline), side('candidate', r.spec.candidate, w && w.candidate))),
    el('span', { class: 'note', text: note }),
  ];
}

function shadowFigures(r, cell) {
  const s = r.shadow;
  cell.dataset.compared = s ? String(s.compared) : '';
  if (!s) {
    cell.textContent = '–';
    cell.title = 'no shadow phase';
    return;
  }
  const kinds = Object.entries(s.diverged);
  const total = kinds.reduce((n, [, k]) => n + k, 0);
  cell.dataset.diverged = String(total);
  cell.title = 'at most ' + r.spec.shadow.max_divergence + ' may differ';
  cell.textContent = s.compared + ' compared, ' + total + ' differed' +
    (kinds.length ? ' (' + kinds.map(([kind, n]) => kind + ' ' + n).join(', ') + ')' : '');
}

function divergence(d) {
  const what = d.paths.concat(d.headers.map((h) => 'header ' + h));
  const status = (s) => (s ? String(s) : '–');
  return el('li', { 'data-kind': d.kind },
    el('time', { text: clock(d.at_ms), dateTime: new Date(d.at_ms).toISOString() }),
    el('span', { class: 'kind kind-diverged', text: d.kind }),
    el('span', { class: 'request', text: d.method + ' ' + d.path }),
    el('span', { class: 'statuses', text: status(d.statuses[0]) + ' → ' + status(d.statuses[1]) }),
    el('span', { class: 'differs', text: d.kind === 'error' ? 'no answer from the candidate' : what.join(', ') }));
}

// Why it ended, its last move and its last differing answers.
function rolloutDetail(r) {
  const parts = [];
  if (r.reason) {
    parts.push(el('p', { class: 'why' }, el('b', { text: 'Why it ended: ' }), el('span', { class: 'reason', text: r.reason })));
  }
  const last = r.history[r.history.length - 1];
  if (last && last.detail !== r.reason) {
    parts.push(el('p', { class: 'last' }, el('b', { text: 'Last move: ' }),
      el('time', { text: clock(last.at_ms) }), ' ', el('span', { class: 'event', text: last.event }),
      ' — ', el('span', { class: 'detail', text: last.detail })));
  }
  const recent = r.divergences.slice(-DIVERGENCES_SHOWN).reverse();
  if (recent.length) {
    parts.push(el('b', { text: 'Last differing answers (baseline → candidate status):' }),
      el('ol', { class: 'divergences' }, ...recent.map(divergence)));
  }
  return parts;
}

function rolloutButtons(entry, r) {
  const actions = rolloutActions(r);
  if (actions.join() === entry.actions) return;
  entry.actions = actions.join();
  entry.cells.actions.replaceChildren(...actions.map((a) =>
    el('button', { type: 'button', text: ACTION_LABELS[a], 'data-action': a, class: a === 'abort' ? 'danger' : '' })));
}

function fillRollout(entry, r) {
  const c = entry.cells;
  entry.view = r;
  Object.assign(entry.tr.dataset, { phase: r.phase, paused: String(r.paused), step: String(r.step), share: String(r.share) });
  entry.tr.className = 'rollout phase-' + r.phase;
  c.pools.textContent = r.spec.baseline + ' → ' + r.spec.candidate;
  c.phase.replaceChildren(el('span', { class: 'phase-name', text: r.phase.replace('_', ' ') }),
    ...(r.paused ? [' ', el('span', { class: 'badge paused', text: 'paused' })] : []),
    el('span', { class: 'since', text: 'since ' + clock(r.since_ms) }));
  c.step.textContent = (r.step > 0 ? r.step : '–') + ' of ' + r.spec.steps.length;
  c.step.title = 'steps: ' + r.spec.steps.join(', ') + ', each at least ' + r.spec.step_every;
  c.share.textContent = shareText(r.share);
  c.gates.replaceChildren(...gateFigures(r));
  shadowFigures(r, c.shadow);
  c.detail.replaceChildren(...rolloutDetail(r));
  rolloutButtons(entry, r);
}

// Shows `list`, the answer of /api/v1/rollouts asked for at `asked` (performance.now()); a
// rollout whose action was answered since keeps what that answer showed, so a poll already under
// way does not show it as it was before. The card is hidden when there is no rollout.
function renderRollouts(list, asked) {
  const seen = new Set(list.map((r) => r.route));
  for (const [route, entry] of rolloutCard.rows) {
    if (seen.has(route)) continue;
    entry.tr.remove();
    entry.detail.remove();
    rolloutCard.rows.delete(route);
  }
  for (const r of list) {
    const entry = rolloutEntry(r.route);
    if (entry.actedAt < asked) fillRollout(entry, r);
  }
  const order = list.map((r) => r.route).join('\n');
  if (order !== rolloutCard.order) {
    const body = document.getElementById('rollouts');
    for (const r of list) body.append(rolloutCard.rows.get(r.route).tr, rolloutCard.rows.get(r.route).detail);
    rolloutCard.order = order;
  }
  document.getElementById('rollouts-card').classList.toggle('hidden', list.length === 0);
}

async function onRolloutAction(event) {
  const button = event.target.closest('button[data-action]');
  if (!button) return;
  const entry = rolloutCard.rows.get(button.closest('tr').dataset.route);
  if (!entry) return;
  const r = entry.view;
  const action = button.dataset.action;
  const question = rolloutQuestion(action, r);
  if (question && !confirm(question)) return;
  const message = document.getElementById('rollouts-message');
  button.disabled = true;
  try {
    const view = await api('POST', '/api/v1/rollouts/' + encodeURIComponent(r.route) + '/' + action);
    fillRollout(entry, view);
    entry.actedAt = performance.now();
    message.textContent = 'rollout of route ' + r.route + ' ' + ACTION_DONE[action];
    message.className = 'message ok';
  } catch (e) {
    message.textContent = 'rollout of route ' + r.route + ': ' + e.message;
    message.className = 'message bad';
  } finally {
    button.disabled = false;
  }
  refresh();
}

document.getElementById('rollouts').addEventListener('click', onRolloutAction);
