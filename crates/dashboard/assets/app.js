// Serin dashboard. Plain JavaScript, no build step. Every call goes to the
// control plane's public API with the signed-in token in an Authorization
// header; the token lives in this tab's sessionStorage only.
'use strict';

const KEY = 'serin.token';
const $ = (s, el) => (el || document).querySelector(s);
const $$ = (s, el) => Array.from((el || document).querySelectorAll(s));
const esc = (v) => String(v == null ? '' : v).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
const RANK = { viewer: 0, deployer: 1, admin: 2 };

const state = { me: null, rollouts: [], view: '', timer: 0, sse: null, refreshQueued: false, firstRender: null };

// ---- API -------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(path, opts) {
  opts = opts || {};
  const headers = { Authorization: 'Bearer ' + sessionStorage.getItem(KEY) };
  let body;
  if (opts.body !== undefined) { headers['Content-Type'] = 'application/json'; body = JSON.stringify(opts.body); }
  const res = await fetch(path, { method: opts.method || 'GET', headers, body, cache: 'no-store' });
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (_) { data = text; }
  if (res.status === 401 && path !== '/v1/whoami') { signOut('Your token is no longer valid; sign in again.'); }
  if (!res.ok) throw new ApiError(res.status, (data && data.error) || res.statusText);
  return data;
}

function can(role) { return state.me && RANK[state.me.role] >= RANK[role]; }

function toast(msg, err) {
  const d = document.createElement('div');
  d.textContent = msg;
  if (err) d.className = 'err';
  $('#toast').appendChild(d);
  setTimeout(() => d.remove(), 6000);
}

function confirmDialog(title, text) {
  const dlg = $('#confirm');
  $('#confirm-title').textContent = title;
  $('#confirm-text').textContent = text;
  return new Promise((resolve) => {
    dlg.addEventListener('close', () => resolve(dlg.returnValue === 'ok'), { once: true });
    dlg.returnValue = '';
    dlg.showModal();
    $('#confirm-cancel').focus();
  });
}

// ---- Formatting ------------------------------------------------------------

function age(secs) {
  if (secs == null) return '';
  if (secs < 90) return secs + 's';
  if (secs < 5400) return Math.round(secs / 60) + 'm';
  if (secs < 172800) return Math.round(secs / 3600) + 'h';
  return Math.round(secs / 86400) + 'd';
}
function ms(v) { return v < 1000 ? v + 'ms' : (v / 1000).toFixed(v % 1000 ? 1 : 0) + 's'; }
function when(msEpoch) { return msEpoch ? new Date(msEpoch).toLocaleString() : ''; }
function badge(phase) { return '<span class="badge p-' + esc(phase) + '">' + esc(phase) + '</span>'; }

function canaryHash(r) {
  const s = r.status || {};
  return s.current_hash && s.current_hash !== s.stable_hash ? s.current_hash : null;
}
function actualWeight(r) {
  const route = r.route;
  if (!route || !route.weights || !route.weights.length) return null;
  const c = canaryHash(r);
  if (!c) return 0;
  const w = route.weights.find((x) => (x.revision || x.hash || x[0]) === c);
  return w ? (w.weight != null ? w.weight : w[1]) : 0;
}
function stepText(r) {
  const s = r.status || {};
  if (!r.steps) return r.strategy === 'blueGreen' ? (s.active_hash && s.active_hash !== s.current_hash ? 'preview' : '—') : '—';
  const i = s.current_step_index == null ? r.steps : s.current_step_index;
  return Math.min(i, r.steps) + '/' + r.steps;
}

// ---- Views -----------------------------------------------------------------

function setView(html) { $('#view').innerHTML = html; }

async function route() {
  clearInterval(state.timer);
  const h = location.hash || '#/';
  for (const a of $$('nav a')) a.toggleAttribute('aria-current', false);
  const mark = (sel) => { const a = $('nav a[href="' + sel + '"]'); if (a) a.setAttribute('aria-current', 'page'); };
  try {
    if (h.startsWith('#/r/')) { state.view = 'rollout'; await rolloutView(decodeURIComponent(h.slice(4))); mark('#/'); state.timer = setInterval(() => refresh(), 3000); }
    else if (h === '#/flags') { state.view = 'flags'; mark('#/flags'); await flagsView(); state.timer = setInterval(() => refresh(), 5000); }
    else if (h === '#/history') { state.view = 'history'; mark('#/history'); await historyView(); }
    else if (h === '#/tokens') { state.view = 'tokens'; mark('#/tokens'); await tokensView(); }
    else { state.view = 'overview'; mark('#/'); await overviewView(); state.timer = setInterval(() => refresh(), 10000); }
  } catch (e) {
    setView('<div class="card error" role="alert">' + esc(e.message) + '</div>');
  }
}

// One refresh at a time: an event during a refresh asks for one more after it
// (with 1,000 rollouts a burst of events must not pile up requests).
async function refresh() {
  if (state.refreshing) { state.again = true; return; }
  state.refreshing = true;
  try {
    do { state.again = false; await refreshOnce(); } while (state.again);
  } finally { state.refreshing = false; }
}

async function refreshOnce() {
  try {
    if (state.view === 'overview') await overviewData();
    else if (state.view === 'rollout') await rolloutView(decodeURIComponent(location.hash.slice(4)), true);
    else if (state.view === 'flags') await flagsView(true);
  } catch (e) { /* the next refresh retries */ }
}

// Overview: one page of rollouts at a time, filtered by the server
// (GET /v1/rollouts?view=summary…), so that 1,000 rollouts cost one page.
const PAGE = 100;

async function overviewView() {
  state.page = 0;
  setView('<h1>Rollouts</h1>' +
    '<div class="filters" role="search" aria-label="Filter rollouts">' +
    '<div><label for="f-name">Name</label><input id="f-name" type="search" placeholder="filter by name"></div>' +
    '<div><label for="f-phase">Phase</label><select id="f-phase"><option value="">any</option>' +
    ['Healthy', 'Progressing', 'Paused', 'Degraded', 'Pending', 'Error'].map((p) => '<option>' + p + '</option>').join('') + '</select></div>' +
    '<div><label class="check" for="f-attn"><input id="f-attn" type="checkbox"> Needs attention</label></div>' +
    '<div class="muted" id="count" aria-live="polite"></div></div>' +
    '<div class="card"><table id="rollouts"><caption class="sr">Rollouts</caption><thead><tr><th scope="col">Name</th><th scope="col">Strategy</th><th scope="col">Phase</th><th scope="col">Step</th><th scope="col">Weight set / actual</th><th scope="col">Stable</th><th scope="col">Canary</th><th scope="col">Age</th></tr></thead><tbody></tbody></table>' +
    '<nav class="pager row" aria-label="Pages of rollouts"><button type="button" id="pg-prev">← Previous</button><span id="pg-info" class="muted"></span><button type="button" id="pg-next">Next →</button></nav></div>');
  let typing = 0;
  const again = () => { state.page = 0; overviewData().catch((e) => toast(e.message, true)); };
  // Typing asks the server once it pauses for 200 ms, not on every key.
  $('#f-name').addEventListener('input', () => { clearTimeout(typing); typing = setTimeout(again, 200); });
  $('#f-phase').addEventListener('change', again);
  $('#f-attn').addEventListener('change', again);
  $('#pg-prev').addEventListener('click', () => { state.page = Math.max(0, state.page - 1); overviewData(); });
  $('#pg-next').addEventListener('click', () => { state.page++; overviewData(); });
  await overviewData();
}

function overviewQuery() {
  const q = new URLSearchParams({ view: 'summary', offset: String(state.page * PAGE), limit: String(PAGE) });
  const name = (($('#f-name') || {}).value || '').trim();
  const phase = ($('#f-phase') || {}).value || '';
  if (name) q.set('name', name);
  if (phase) q.set('phase', phase);
  if (($('#f-attn') || {}).checked) q.set('attention', 'true');
  return q;
}

function summaryStep(r) {
  if (r.steps) return Math.min(r.step == null ? r.steps : r.step, r.steps) + '/' + r.steps;
  return r.preview ? 'preview' : '—';
}

async function overviewData() {
  // Answers can arrive out of order (typing, a refresh): only the newest counts.
  const seq = (state.listSeq = (state.listSeq || 0) + 1);
  const res = await api('/v1/rollouts?' + overviewQuery());
  if (seq !== state.listSeq) return;
  const tbody = $('#rollouts tbody');
  if (!tbody) return;
  if (res.total && state.page * PAGE >= res.total) { state.page = Math.ceil(res.total / PAGE) - 1; return overviewData(); }
  tbody.innerHTML = res.items.map((r) => {
    const phase = r.phase;
    return '<tr data-rollout="' + esc(r.name) + '" data-phase="' + esc(phase) + '" data-attn="' + (r.attention ? 1 : 0) + '">' +
      '<th scope="row"><a href="#/r/' + encodeURIComponent(r.name) + '">' + esc(r.name) + '</a>' +
      (r.awaitingPromotion ? ' <span class="attn small">waiting: ' + esc(r.awaitingPromotion) + '</span>' : '') +
      (r.analysisInconclusive ? ' <span class="attn small">analysis inconclusive</span>' : '') +
      (r.error ? '<div class="error small">' + esc(r.error) + '</div>' : '') + '</th>' +
      '<td>' + esc(r.strategy || '') + '</td><td class="phase">' + badge(phase) + '</td><td>' + esc(r.error ? '' : summaryStep(r)) + '</td>' +
      '<td>' + (r.canaryWeight != null ? esc(r.canaryWeight) + '% / ' + (r.routedWeight == null ? '?' : esc(r.routedWeight) + '%') : '—') + '</td>' +
      '<td class="small">' + esc((r.stableImages || []).join(', ')) + '</td><td class="small">' + esc((r.canaryImages || []).join(', ')) + '</td>' +
      '<td>' + (r.ageSeconds != null ? esc(age(r.ageSeconds)) : '—') + '</td></tr>';
  }).join('') || '<tr><td colspan="8" class="muted">no rollout matches</td></tr>';
  $('#count').textContent = res.total + ' of ' + res.all + ' rollouts';
  const from = res.total ? res.offset + 1 : 0, to = res.offset + res.items.length;
  $('#pg-info').textContent = res.total > PAGE ? from + '–' + to + ' of ' + res.total : '';
  $('#pg-prev').disabled = res.offset === 0;
  $('#pg-next').disabled = to >= res.total;
  $('.pager').hidden = res.total <= PAGE;
  if (state.firstRender == null) {
    state.firstRender = performance.now();
    document.documentElement.dataset.firstRenderMs = String(Math.round(state.firstRender));
  }
}

// Rollout page.
const OPS = [
  ['promote', 'Promote', 'Moves past the current pause or gate to the next step.'],
  ['promote-full', 'Promote full', 'Skips all remaining steps and analyses: the new revision takes 100 % of traffic and becomes stable.'],
  ['pause', 'Pause', 'Stops the rollout where it is until Resume.'],
  ['resume', 'Resume', 'Continues a rollout paused by Pause.'],
  ['abort', 'Abort', 'Sends all traffic back to the stable revision and scales the new one down.'],
  ['retry', 'Retry', 'Starts an aborted rollout again from the first step.'],
  ['restart', 'Restart', 'Replaces every pod, surge first, without going through the steps.'],
  ['undo', 'Undo', 'Rolls back to the previous revision (a new rollout of its template).'],
  ['emergency-rollback', 'Emergency rollback', 'The emergency playbook: aborts the rollout (or undoes it if already promoted), waits until all traffic is on the stable revision, and notifies.'],
];

function stepLabel(st) {
  if (st.SetWeight != null) return 'weight ' + st.SetWeight + '%';
  if ('Pause' in st) return st.Pause == null ? 'pause (until promoted)' : 'pause ' + ms(st.Pause);
  if (st.Analysis) return 'analysis ' + (st.Analysis.templates || []).join(', ');
  if (st.SetCanaryScale) return 'canary scale ' + JSON.stringify(st.SetCanaryScale);
  if (st.SetHeaderRoute) return 'header route';
  return JSON.stringify(st);
}

async function rolloutView(name, quiet) {
  const [r, spec] = await Promise.all([api('/v1/rollouts/' + encodeURIComponent(name)), api('/v1/rollouts/' + encodeURIComponent(name) + '/spec').catch(() => null)]);
  if (quiet && (state.view !== 'rollout' || decodeURIComponent(location.hash.slice(4)) !== name)) return;
  if (quiet && $('#confirm').open) return;
  const s = r.status || {};
  const deployer = can('deployer');
  const dis = deployer ? '' : ' disabled title="Your role (viewer) is read-only"';
  const actions = '<div class="row" role="toolbar" aria-label="Rollout actions">' +
    OPS.map(([op, label]) => '<button type="button" data-op="' + op + '"' + dis + (op === 'abort' || op === 'emergency-rollback' ? ' class="danger"' : '') + '>' + label + '</button>').join('') +
    (deployer ? '' : '<span class="note">read-only: signed in as a viewer</span>') + '</div>';
  const steps = spec && spec.strategy && spec.strategy.Canary ? spec.strategy.Canary.steps : [];
  const cur = s.current_step_index == null ? steps.length : s.current_step_index;
  const pause = (s.pause_conditions || [])[0];
  const stepsHtml = steps.length ? '<ol class="steps" aria-label="Steps">' + steps.map((st, i) => {
    let extra = '';
    if (i === cur && st.Pause != null && pause && !s.abort) {
      const left = Math.max(0, pause.since + st.Pause - Date.now());
      extra = ' — ' + ms(Math.round(left / 100) * 100) + ' left';
    }
    return '<li class="' + (i < cur ? 'done' : i === cur ? 'current' : '') + '"' + (i === cur ? ' aria-current="step"' : '') + '>' + (i + 1) + '. ' + esc(stepLabel(st)) + esc(extra) + '</li>';
  }).join('') + '</ol>' : '<p class="muted">' + esc(r.strategy) + ': no steps</p>';
  const revs = (r.revisions || []).map((rv) => '<tr data-revision="' + esc(rv.revision) + '"><td>' + esc(rv.revision) + (rv.stable ? ' <span class="badge p-Healthy">stable</span>' : '') + (rv.hash === s.current_hash && !rv.stable ? ' <span class="badge p-Progressing">canary</span>' : '') + '</td>' +
    '<td class="small"><code>' + esc(rv.hash.slice(0, 10)) + '</code><div>' + esc((rv.images || (spec && spec.revisionImages[rv.hash]) || []).join(', ')) + '</div></td>' +
    '<td>' + esc((rv.pods || []).filter((p) => p.ready).length) + '/' + esc(rv.desired) + '</td>' +
    '<td class="small">' + (rv.pods || []).map((p) => esc(p.name) + ' ' + (p.ready ? 'ready' : esc(p.status || 'not ready')) + ', ' + esc(p.restarts) + ' restarts, ' + esc(age(p.ageSeconds))).join('<br>') + '</td>' +
    '<td>' + (rv.stable || rv.hash === s.current_hash ? '' : '<button type="button" data-undo="' + esc(rv.revision) + '"' + dis + '>Roll back to this</button>') + '</td></tr>').join('');
  const events = (r.events || []).map((e) => {
    const kind = typeof e.event === 'string' ? e.event : Object.keys(e.event || {})[0];
    const detail = typeof e.event === 'object' && e.event ? e.event[kind] : null;
    return '<tr><td class="small">' + esc(when(e.at)) + '</td><td><strong>' + esc(kind) + '</strong> <span class="small muted">' + esc(detail && typeof detail === 'object' ? Object.entries(detail).map(([k, v]) => k + '=' + (typeof v === 'object' ? JSON.stringify(v) : v)).join(' ') : (detail != null ? detail : '')) + '</span></td></tr>';
  }).join('');
  const html = '<p><a href="#/">← Rollouts</a></p><h1>' + esc(r.name) + ' ' + badge(s.phase) + '</h1>' +
    '<div class="card"><dl class="kv"><dt>Strategy</dt><dd>' + esc(r.strategy) + ' · ' + esc(r.replicas) + ' replicas</dd>' +
    '<dt>Message</dt><dd id="message">' + esc(s.message || '') + '</dd>' +
    '<dt>Step</dt><dd id="step">' + esc(stepText(r)) + '</dd>' +
    '<dt>Canary weight</dt><dd>' + esc(s.canary_weight) + '% set' + (actualWeight(r) != null ? ', ' + esc(actualWeight(r)) + '% routed' : '') + '</dd>' +
    (r.awaitingPromotion ? '<dt>Waiting</dt><dd class="attn">' + esc(r.awaitingPromotion) + ' — Promote to continue</dd>' : '') +
    (s.abort ? '<dt>Aborted</dt><dd class="error">' + esc(when(s.aborted_at)) + '</dd>' : '') +
    '</dl></div><div class="card">' + actions + '</div>' +
    '<h2>Steps</h2><div class="card">' + stepsHtml + '</div>' +
    '<h2>Analysis</h2>' + analysisHtml(r, spec) +
    '<h2>Revisions</h2><div class="card"><table><thead><tr><th>Revision</th><th>Images</th><th>Ready</th><th>Pods</th><th></th></tr></thead><tbody>' + revs + '</tbody></table></div>' +
    '<h2>Events</h2><div class="card"><table><tbody>' + (events || '<tr><td class="muted">none</td></tr>') + '</tbody></table></div>';
  const focused = document.activeElement && document.activeElement.dataset ? document.activeElement.dataset.op : null;
  setView(html);
  if (focused) { const b = $('button[data-op="' + focused + '"]'); if (b) b.focus(); }
  for (const b of $$('button[data-op]')) b.addEventListener('click', () => operate(r.name, b.dataset.op));
  for (const b of $$('button[data-undo]')) b.addEventListener('click', () => operate(r.name, 'undo', Number(b.dataset.undo)));
}

async function operate(name, op, toRevision) {
  const def = OPS.find((o) => o[0] === op);
  const what = toRevision ? 'Rolls back to revision ' + toRevision + ': its template becomes the desired one and is rolled out.' : def[2];
  if (!(await confirmDialog(def[1] + ' ' + name + '?', what))) return;
  try {
    const res = await api('/v1/rollouts/' + encodeURIComponent(name) + '/' + op, { method: 'POST', body: toRevision ? { toRevision } : {} });
    if (typeof res === 'string') {
      // The emergency playbook streams NDJSON progress; its last line is the verdict.
      const last = JSON.parse(res.trim().split('\n').pop() || '{}');
      toast(def[1] + (last.ok ? ': done in ' + last.seconds + ' s' : ': ' + (last.error || 'failed')), !last.ok);
    } else toast(def[1] + ': requested for ' + name);
  } catch (e) { toast(def[1] + ' refused: ' + e.message, true); }
  await refresh();
}

// Analysis: every measured value charted against its condition.
function numeric(v) {
  if (typeof v === 'number') return v;
  if (Array.isArray(v) && v.length && typeof v[0] === 'number') return v[0];
  if (typeof v === 'string' && v.trim() !== '' && !isNaN(Number(v))) return Number(v);
  if (v && typeof v === 'object' && typeof v.value === 'number') return v.value;
  // The judge's measurement: its estimate (error-rate ratio, or P(canary slower)).
  if (v && typeof v === 'object' && typeof v.estimate === 'number') return v.estimate;
  return null;
}
function field(v, k) { return v && typeof v === 'object' && typeof v[k] === 'number' && isFinite(v[k]) ? v[k] : null; }
function threshold(cond) {
  if (!cond) return null;
  const m = /result(?:\[0\])?\s*(<=|>=|<|>)\s*(-?[0-9.]+(?:e-?[0-9]+)?)/.exec(cond);
  return m ? { op: m[1], value: Number(m[2]) } : null;
}
function chart(measurements, metricDef, abortedAt, origin) {
  // Without the run's wall-clock origin the abort cannot be placed.
  if (!origin) abortedAt = null;
  const pts = measurements.map((m) => ({ t: origin + (m.finishedAt != null ? m.finishedAt : m.startedAt), v: numeric(m.value), lo: field(m.value, 'lowerBound'), hi: field(m.value, 'upperBound'), thr: field(m.value, 'threshold'), phase: m.phase, msg: m.message, raw: m.value })).filter((p) => p.v != null && !isNaN(p.t));
  const fail = threshold(metricDef && metricDef.failureCondition);
  const ok = threshold(metricDef && metricDef.successCondition);
  const W = 520, H = 180, L = 46, R = 10, T = 10, B = 24;
  if (!pts.length) return '<p class="muted">no numeric measurements yet</p>';
  // A judge metric carries its own threshold and confidence bounds: it fails
  // the canary once the lower bound is above the threshold, passes it once
  // the upper bound is below.
  const judgeThr = pts.map((p) => p.thr).filter((v) => v != null).pop();
  let t0 = Math.min(...pts.map((p) => p.t)), t1 = Math.max(...pts.map((p) => p.t));
  if (abortedAt && abortedAt > t0 - 60000) t1 = Math.max(t1, abortedAt);
  if (t1 === t0) t1 = t0 + 1000;
  const vals = pts.map((p) => p.v).concat(fail ? [fail.value] : [], ok ? [ok.value] : [], judgeThr != null ? [judgeThr] : []);
  // Early bounds can be very wide: they widen the scale up to 3× the values, no further.
  const cap = 3 * Math.max(...vals.map(Math.abs), 1e-9);
  for (const p of pts) for (const b of [p.lo, p.hi]) if (b != null && Math.abs(b) <= cap) vals.push(b);
  let v0 = Math.min(0, ...vals), v1 = Math.max(...vals);
  if (v1 === v0) v1 = v0 + 1;
  v1 += (v1 - v0) * 0.08;
  const x = (t) => L + ((t - t0) / (t1 - t0)) * (W - L - R);
  const y = (v) => T + (1 - (Math.min(Math.max(v, v0), v1) - v0) / (v1 - v0)) * (H - T - B);
  const fmt = (v) => Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 1 ? v.toFixed(2) : v.toFixed(3);
  let svg = '<svg viewBox="0 0 ' + W + ' ' + H + '" role="img" aria-label="measured values over time">';
  svg += '<line class="axis" x1="' + L + '" y1="' + (H - B) + '" x2="' + (W - R) + '" y2="' + (H - B) + '"/><line class="axis" x1="' + L + '" y1="' + T + '" x2="' + L + '" y2="' + (H - B) + '"/>';
  svg += '<text x="' + (L - 4) + '" y="' + (T + 8) + '" text-anchor="end">' + fmt(v1) + '</text><text x="' + (L - 4) + '" y="' + (H - B) + '" text-anchor="end">' + fmt(v0) + '</text>';
  svg += '<text x="' + L + '" y="' + (H - 8) + '">' + esc(new Date(t0).toLocaleTimeString()) + '</text><text x="' + (W - R) + '" y="' + (H - 8) + '" text-anchor="end">' + esc(new Date(t1).toLocaleTimeString()) + '</text>';
  if (fail) svg += '<line class="thr" x1="' + L + '" x2="' + (W - R) + '" y1="' + y(fail.value) + '" y2="' + y(fail.value) + '"><title>failure: result ' + esc(fail.op) + ' ' + fail.value + '</title></line><text x="' + (W - R) + '" y="' + (y(fail.value) - 3) + '" text-anchor="end">fail ' + esc(fail.op) + ' ' + fail.value + '</text>';
  if (ok) svg += '<line class="thr ok" x1="' + L + '" x2="' + (W - R) + '" y1="' + y(ok.value) + '" y2="' + y(ok.value) + '"><title>success: result ' + esc(ok.op) + ' ' + ok.value + '</title></line>';
  if (judgeThr != null) svg += '<line class="thr judge" x1="' + L + '" x2="' + (W - R) + '" y1="' + y(judgeThr) + '" y2="' + y(judgeThr) + '"><title>judge threshold ' + fmt(judgeThr) + ': fails when the lower bound is above it, passes when the upper bound is below</title></line><text x="' + (W - R) + '" y="' + (y(judgeThr) - 3) + '" text-anchor="end">threshold ' + fmt(judgeThr) + '</text>';
  for (const p of pts) if (p.lo != null || p.hi != null) {
    const lo = p.lo != null ? p.lo : v0, hi = p.hi != null ? p.hi : v1;
    svg += '<line class="bound" data-lower="' + (p.lo != null ? p.lo : '') + '" data-upper="' + (p.hi != null ? p.hi : '') + '" x1="' + x(p.t).toFixed(1) + '" x2="' + x(p.t).toFixed(1) + '" y1="' + y(lo).toFixed(1) + '" y2="' + y(hi).toFixed(1) + '"><title>confidence bounds ' + (p.lo != null ? fmt(p.lo) : '−∞') + ' … ' + (p.hi != null ? fmt(p.hi) : '∞') + '</title></line>';
  }
  svg += '<polyline class="line" points="' + pts.map((p) => x(p.t).toFixed(1) + ',' + y(p.v).toFixed(1)).join(' ') + '"/>';
  for (const p of pts) svg += '<circle class="pt ' + esc(p.phase) + '" data-phase="' + esc(p.phase) + '" data-value="' + p.v + '" cx="' + x(p.t).toFixed(1) + '" cy="' + y(p.v).toFixed(1) + '" r="4"><title>' + esc(new Date(p.t).toLocaleTimeString() + ' ' + p.phase + ': ' + JSON.stringify(p.raw) + (p.msg ? ' — ' + p.msg : '')) + '</title></circle>';
  if (abortedAt && abortedAt >= t0 && abortedAt <= t1) svg += '<line class="abort" x1="' + x(abortedAt) + '" x2="' + x(abortedAt) + '" y1="' + T + '" y2="' + (H - B) + '"><title>aborted ' + esc(new Date(abortedAt).toLocaleTimeString()) + '</title></line><text class="abort-label" x="' + (x(abortedAt) - 3) + '" y="' + (T + 10) + '" text-anchor="end">abort</text>';
  return svg + '</svg>';
}

function evidence(v) {
  if (!v || typeof v !== 'object' || Array.isArray(v)) return '';
  return '<h3>Judge evidence (last measurement)</h3><dl class="kv small">' + Object.keys(v).map((k) => '<dt>' + esc(k) + '</dt><dd>' + esc(typeof v[k] === 'object' ? JSON.stringify(v[k]) : v[k]) + '</dd>').join('') + '</dl>';
}

function analysisHtml(r, spec) {
  const runs = r.analysisRuns || [];
  if (!runs.length) return '<div class="card muted">No analysis runs.</div>';
  const defs = {};
  for (const t of (spec && spec.templates) || []) for (const m of t.metrics || []) defs[m.name] = Object.assign({ template: t.name }, m);
  const abortedAt = r.status && r.status.abort ? r.status.aborted_at : null;
  return runs.map((run) => '<div class="card analysis" data-run="' + esc(run.name) + '"><h3>' + esc(run.name) + ' ' + badge(run.phase) + '</h3>' +
    (run.message ? '<p class="small">' + esc(run.message) + '</p>' : '') +
    '<div class="grid">' + (run.metricResults || []).map((m) => {
      const d = defs[m.name] || {};
      const prov = d.provider ? Object.keys(d.provider).join(', ') : '';
      // The last measurement with a value (a terminated run ends on one without).
      const last = (m.measurements || []).filter((x) => x.value != null).slice(-1)[0];
      return '<div class="chart" data-metric="' + esc(m.name) + '"><h3>' + esc(m.name) + ' ' + badge(m.phase) + '</h3>' +
        '<dl class="kv small">' +
        (d.failureCondition ? '<dt>failure</dt><dd><code>' + esc(d.failureCondition) + '</code></dd>' : '') +
        (d.successCondition ? '<dt>success</dt><dd><code>' + esc(d.successCondition) + '</code></dd>' : '') +
        (prov ? '<dt>provider</dt><dd><code>' + esc(JSON.stringify(d.provider)) + '</code></dd>' : '') +
        '<dt>limits</dt><dd>failureLimit ' + esc(d.failureLimit != null ? d.failureLimit : 0) + ', consecutiveErrorLimit ' + esc(d.consecutiveErrorLimit != null ? d.consecutiveErrorLimit : 4) + ', inconclusiveLimit ' + esc(d.inconclusiveLimit != null ? d.inconclusiveLimit : 0) + '</dd>' +
        '<dt>counts</dt><dd>' + esc(m.count) + ' measured: ' + esc(m.successful) + ' ok, ' + esc(m.failed) + ' failed, ' + esc(m.inconclusive) + ' inconclusive, ' + esc(m.error) + ' errors (' + esc(m.consecutiveError) + ' in a row)</dd>' +
        (m.message ? '<dt>verdict</dt><dd>' + esc(m.message) + '</dd>' : '') + '</dl>' +
        chart(m.measurements || [], d, abortedAt, (spec && spec.runOrigins && spec.runOrigins[run.name]) || 0) +
        '<div class="legend"><span><i class="Successful"></i>successful</span><span><i class="Failed"></i>failed</span><span><i class="Inconclusive"></i>inconclusive</span><span><i class="Error"></i>error</span><span><i class="abort"></i>abort</span>' + (last && field(last.value, 'threshold') != null ? '<span><i class="bound"></i>confidence bounds</span><span><i class="thr"></i>judge threshold</span>' : '') + '</div>' +
        (last ? evidence(last.value) : '') + '</div>';
    }).join('') + '</div></div>').join('');
}

// Flags.
function targetingText(t) {
  if (t == null || (typeof t === 'object' && !Object.keys(t).length)) return 'none: everyone gets the default';
  if (t.fractional) return t.fractional.map((b) => b[0] + ' ' + b[1] + '%').join(' / ') + ' (by targeting key)';
  return JSON.stringify(t, null, 1);
}

async function flagsView(quiet) {
  if (quiet && document.activeElement && document.activeElement.matches('input')) return;
  let flags, rollouts, audit;
  try { flags = await api('/v1/flags'); } catch (e) { setView('<h1>Flags</h1><div class="card muted">' + esc(e.message) + '</div>'); return; }
  [rollouts, audit] = await Promise.all([api('/v1/flagrollouts').catch(() => []), api('/v1/flags/audit?limit=30').catch(() => null)]);
  if (quiet && ($('#confirm').open || state.view !== 'flags')) return;
  const deployer = can('deployer') && flags.writable;
  const dis = deployer ? '' : ' disabled title="' + (flags.writable ? 'Your role (viewer) is read-only' : 'Flags come from a file: edit the file') + '"';
  const rows = flags.flags.map((f) => '<tr data-flag="' + esc(f.key) + '"><td><strong>' + esc(f.key) + '</strong>' + (f.metadata && f.metadata.tags ? '<div class="small muted">tags: ' + esc(f.metadata.tags) + '</div>' : '') + '</td>' +
    '<td>' + badge(f.state === 'DISABLED' ? 'Aborted' : 'Healthy').replace(/>[A-Za-z]+</, '>' + esc(f.state) + '<') + '</td>' +
    '<td class="small">' + esc(Object.entries(f.variants || {}).map(([k, v]) => k + '=' + JSON.stringify(v)).join(', ')) + '</td>' +
    '<td>' + esc(f.defaultVariant) + '</td><td class="small">' + esc(targetingText(f.targeting)) + '</td>' +
    '<td>' + (f.percentage != null ? '<span data-pct>' + esc(f.percentage) + '%</span>' : '—') + '</td>' +
    '<td><div class="row"><label class="sr" for="pct-' + esc(f.key) + '">Percentage of ' + esc(f.key) + '</label><input class="pct" type="number" min="0" max="100" id="pct-' + esc(f.key) + '" data-flag-pct="' + esc(f.key) + '" value="' + esc(f.percentage != null ? f.percentage : '') + '"' + dis + '><span aria-hidden="true">%</span><button type="button" data-flag-set="' + esc(f.key) + '"' + dis + '>Set</button></div></td></tr>').join('');
  const stepState = { Passed: 'done', Running: 'current' };
  const fr = (Array.isArray(rollouts) ? rollouts : []).map((x) => '<tr data-flagrollout="' + esc(x.name) + '"><td><strong>' + esc(x.name) + '</strong><div class="small muted">flag ' + esc(x.flag) + ', every ' + esc(x.interval) + '</div></td>' +
    '<td>' + badge(x.phase) + '<div class="small">' + esc(x.message || '') + '</div></td><td>' + esc(x.currentStep) + '/' + esc(x.totalSteps) + (x.percentage != null ? ' at ' + esc(x.percentage) + '%' : '') + '</td>' +
    '<td><ol class="steps" aria-label="Steps of ' + esc(x.name) + '">' + (x.stepResults && x.stepResults.length ? x.stepResults : (x.steps || []).map((p, i) => ({ step: i + 1, percentage: p, state: 'Pending' }))).map((st) =>
      '<li class="' + (stepState[st.state] || '') + '" title="' + esc(st.state + (st.analysis && st.analysis.phase ? ', analysis ' + st.analysis.phase : '')) + '">' + esc(st.percentage) + '% <span class="small p-' + esc(st.state === 'Passed' ? 'Successful' : st.state) + '">' + esc(st.state) + (st.analysis && st.analysis.phase ? ' · analysis ' + esc(st.analysis.phase) : '') + '</span></li>').join('') + '</ol></td></tr>').join('');
  const au = audit && audit.entries ? audit.entries.map((e) => '<tr><td class="small">' + esc(e.at) + '</td><td>' + esc(e.actor) + '</td><td>' + esc(e.flag) + '</td><td>' + esc(e.action) + '</td></tr>').join('') : '';
  setView('<h1>Flags <span class="muted small">environment ' + esc(flags.environment) + ', version ' + esc(flags.version) + '</span></h1>' +
    '<div class="card"><table id="flags"><thead><tr><th>Flag</th><th>State</th><th>Variants</th><th>Default</th><th>Targeting</th><th>Rollout</th><th>Set percentage</th></tr></thead><tbody>' + rows + '</tbody></table></div>' +
    '<h2>Kill switch</h2><div class="card"><form id="kill" class="row"><label for="kill-tag" class="inline">Disable every flag tagged</label><input id="kill-tag" required' + dis + '><button class="danger" type="submit"' + dis + '>Kill</button></form></div>' +
    '<h2>Flag rollouts</h2><div class="card"><table><thead><tr><th>FlagRollout</th><th>Phase</th><th>Step</th><th>Steps</th></tr></thead><tbody>' + (fr || '<tr><td class="muted">none</td></tr>') + '</tbody></table></div>' +
    '<h2>Audit log</h2><div class="card"><table><thead><tr><th>When</th><th>Who</th><th>Flag</th><th>What</th></tr></thead><tbody id="audit">' + (au || '<tr><td class="muted">no entries</td></tr>') + '</tbody></table></div>');
  for (const b of $$('button[data-flag-set]')) b.addEventListener('click', async () => {
    const key = b.dataset.flagSet;
    const pct = Number($('input[data-flag-pct="' + CSS.escape(key) + '"]').value);
    if (!(await confirmDialog('Set ' + key + ' to ' + pct + ' %?', pct + ' % of targeting keys will get the on variant, the rest the other one, from the next evaluation.'))) return;
    try { await api('/v1/flags/' + encodeURIComponent(key) + '/percentage', { method: 'PUT', body: { percentage: pct } }); toast(key + ' set to ' + pct + ' %'); } catch (e) { toast('refused: ' + e.message, true); }
    await flagsView();
  });
  $('#kill').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const tag = $('#kill-tag').value.trim();
    if (!(await confirmDialog('Kill switch: ' + tag, 'Every flag tagged "' + tag + '" is DISABLED at once (all or nothing) and serves its default variant.'))) return;
    try { const res = await api('/v1/flags/kill-switch', { method: 'POST', body: { tag } }); toast('disabled: ' + (res.disabled.join(', ') || 'nothing')); } catch (e) { toast('refused: ' + e.message, true); }
    await flagsView();
  });
}

// History: the seed's table and deployments over time.
async function historyView() {
  const [rep, hist] = await Promise.all([api('/v1/report?since=30d').catch((e) => ({ error: e.message })), api('/v1/history?since=30d').catch(() => [])]);
  const list = Array.isArray(hist) ? hist : [];
  const days = {};
  for (const d of list) {
    const k = new Date(d.started_at_ms || 0).toISOString().slice(0, 10);
    days[k] = days[k] || { ok: 0, bad: 0 };
    if (/abort|rolled|fail/i.test(String(d.outcome))) days[k].bad++; else if (/succeed/i.test(String(d.outcome))) days[k].ok++;
  }
  const keys = Object.keys(days).sort();
  let bars = '<p class="muted">no deployments recorded</p>';
  if (keys.length) {
    const max = Math.max(...keys.map((k) => days[k].ok + days[k].bad));
    const W = 520, H = 160, bw = Math.max(6, Math.min(40, (W - 40) / keys.length - 4));
    bars = '<div class="chart"><svg viewBox="0 0 ' + W + ' ' + H + '" role="img" aria-label="deployments per day">' + keys.map((k, i) => {
      const x = 30 + i * (bw + 4), ok = days[k].ok, bad = days[k].bad, hOk = (ok / max) * (H - 30), hBad = (bad / max) * (H - 30);
      return '<rect class="bar" x="' + x + '" width="' + bw + '" y="' + (H - 20 - hOk) + '" height="' + hOk + '"><title>' + k + ': ' + ok + ' succeeded</title></rect>' +
        '<rect class="bar bad" x="' + x + '" width="' + bw + '" y="' + (H - 20 - hOk - hBad) + '" height="' + hBad + '"><title>' + k + ': ' + bad + ' rolled back or failed</title></rect>' +
        '<text x="' + x + '" y="' + (H - 6) + '">' + k.slice(5) + '</text>';
    }).join('') + '</svg></div>';
  }
  const recent = list.slice(-30).reverse().map((d) => '<tr><td class="small">' + esc(when(d.started_at_ms)) + '</td><td><a href="#/r/' + encodeURIComponent(d.rollout) + '">' + esc(d.rollout) + '</a></td><td>' + esc(d.strategy) + '</td>' +
    '<td class="small"><code>' + esc((d.from_revision || '—') + ' → ' + d.to_revision) + '</code></td><td>' + badge(d.outcome) + (d.abort_reason ? '<div class="small">' + esc(d.abort_reason) + '</div>' : '') + '</td>' +
    '<td>' + esc(d.ended_at_ms ? ms(d.ended_at_ms - d.started_at_ms) : 'in progress') + '</td><td class="small">' + esc(d.requests) + ' requests, ' + esc(d.failed_requests) + ' failed</td></tr>').join('');
  setView('<h1>History</h1><h2>Before / after (last 30 days)</h2><div class="card">' + (rep && rep.text ? '<pre id="report">' + esc(rep.text) + '</pre>' : '<p class="muted">' + esc(rep && rep.error) + '</p>') + '</div>' +
    '<h2>Deployments per day</h2><div class="card">' + bars + '</div>' +
    '<h2>Recent deployments</h2><div class="card"><table><thead><tr><th>Started</th><th>Rollout</th><th>Strategy</th><th>Revisions</th><th>Outcome</th><th>Took</th><th>Traffic</th></tr></thead><tbody>' + (recent || '<tr><td class="muted">none</td></tr>') + '</tbody></table></div>');
}

// Tokens (admin).
async function tokensView() {
  if (!can('admin')) { setView('<h1>Tokens</h1><div class="card muted">Only an admin token can manage tokens.</div>'); return; }
  const list = await api('/v1/tokens');
  setView('<h1>Tokens</h1><div class="card"><table><thead><tr><th>Name</th><th>Role</th><th>Created</th></tr></thead><tbody>' +
    list.map((t) => '<tr><td>' + esc(t.name) + '</td><td>' + esc(t.role) + '</td><td>' + esc(when(t.created_ms)) + '</td></tr>').join('') + '</tbody></table></div>' +
    '<h2>New token</h2><div class="card"><form id="newtoken" class="row"><label for="nt-name" class="inline">Name</label><input id="nt-name" required><label for="nt-role" class="inline">Role</label><select id="nt-role"><option>viewer</option><option>deployer</option><option>admin</option></select><button class="primary" type="submit">Create</button></form><p class="note" id="nt-out" role="status"></p></div>');
  $('#newtoken').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    try {
      const t = await api('/v1/tokens', { method: 'POST', body: { name: $('#nt-name').value, role: $('#nt-role').value } });
      // Shown once, as text in the page (never in a URL); copy it now.
      $('#nt-out').textContent = 'Token for ' + t.name + ' (' + t.role + '), shown once: ' + t.token;
    } catch (e) { toast(e.message, true); }
  });
}

// ---- Live updates: SSE through fetch (EventSource cannot send headers) ----

async function live() {
  if (state.sse) return;
  const ctl = new AbortController();
  state.sse = ctl;
  const dot = $('#live');
  dot.hidden = false;
  let backoff = 500;
  while (state.sse === ctl) {
    try {
      const res = await fetch('/v1/events', { headers: { Authorization: 'Bearer ' + sessionStorage.getItem(KEY), Accept: 'text/event-stream' }, signal: ctl.signal });
      if (!res.ok) throw new Error('events: ' + res.status);
      dot.classList.remove('off');
      backoff = 500;
      const reader = res.body.getReader();
      const dec = new TextDecoder();
      let buf = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += dec.decode(value, { stream: true });
        let i;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const chunk = buf.slice(0, i);
          buf = buf.slice(i + 2);
          if (/^data:/m.test(chunk)) queueRefresh();
        }
      }
    } catch (e) {
      if (ctl.signal.aborted) return;
    }
    dot.classList.add('off');
    await new Promise((r) => setTimeout(r, backoff));
    backoff = Math.min(backoff * 2, 10000);
  }
}

function queueRefresh() {
  if (state.refreshQueued) return;
  state.refreshQueued = true;
  setTimeout(() => { state.refreshQueued = false; refresh(); }, 300);
}

// ---- Sign-in ---------------------------------------------------------------

function signOut(msg) {
  sessionStorage.removeItem(KEY);
  state.me = null;
  if (state.sse) { state.sse.abort(); state.sse = null; }
  clearInterval(state.timer);
  showSignIn(msg);
}

function showSignIn(msg) {
  $('#signin').hidden = false;
  $('#nav').hidden = true;
  $('#signout').hidden = true;
  $('#live').hidden = true;
  $('#who').textContent = '';
  setView('');
  $('#signin-error').textContent = msg || '';
  $('#token').focus();
}

async function start() {
  if (!sessionStorage.getItem(KEY)) { showSignIn(); return; }
  try {
    state.me = await api('/v1/whoami');
  } catch (e) {
    sessionStorage.removeItem(KEY);
    showSignIn(e.status === 401 ? 'That token is not valid.' : e.message);
    return;
  }
  $('#signin').hidden = true;
  $('#nav').hidden = false;
  $('#signout').hidden = false;
  $('#nav-tokens').hidden = !can('admin');
  $('#who').innerHTML = 'Signed in as <strong id="who-name">' + esc(state.me.name) + '</strong> <span class="badge" id="who-role">' + esc(state.me.role) + '</span>';
  route();
  live();
}

function applyTheme(t) {
  if (t) document.documentElement.dataset.theme = t; else delete document.documentElement.dataset.theme;
}

document.addEventListener('DOMContentLoaded', () => {
  applyTheme(localStorage.getItem('serin.theme'));
  $('#theme').addEventListener('click', () => {
    const dark = document.documentElement.dataset.theme === 'dark' || (!document.documentElement.dataset.theme && matchMedia('(prefers-color-scheme: dark)').matches);
    const t = dark ? 'light' : 'dark';
    localStorage.setItem('serin.theme', t);
    applyTheme(t);
  });
  $('#signin-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const t = $('#token').value.trim();
    $('#token').value = '';
    if (!t) return;
    sessionStorage.setItem(KEY, t);
    start();
  });
  $('#signout').addEventListener('click', () => signOut());
  // The app routes on '#/…'; the skip link must move focus, not navigate
  // (its '#main' used to route to the overview from any page).
  $('.skip').addEventListener('click', (ev) => { ev.preventDefault(); $('#main').focus(); });
  window.addEventListener('hashchange', () => { if (state.me && location.hash.startsWith('#/')) route(); });
  start();
});
