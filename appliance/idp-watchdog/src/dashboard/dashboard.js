// The watchdog's dashboard. No library: the DOM is built with createElement (never
// innerHTML with data) and each SLO's chart is an inline SVG drawn here.
'use strict';

(function () {
  const KEY = 'idp-lab-watchdog-token';
  const REFRESH_MS = 5000;
  const SLO_REFRESH_MS = 30000;
  const COLORS = ['#2563eb', '#dc2626', '#16a34a', '#9333ea', '#ea580c', '#0891b2', '#ca8a04', '#db2777'];
  const SVG = 'http://www.w3.org/2000/svg';

  let memoryToken = null;
  let timer = null;
  let lastSlos = 0;

  // ---- the token: ?token= once, then session storage, sent as a header ----

  function storedToken() {
    try {
      return sessionStorage.getItem(KEY) || memoryToken;
    } catch (e) {
      return memoryToken;
    }
  }

  function storeToken(token) {
    memoryToken = token;
    try {
      if (token) sessionStorage.setItem(KEY, token);
      else sessionStorage.removeItem(KEY);
    } catch (e) {
      // Storage refused (a locked-down browser): kept in memory for this page only.
    }
  }

  function takeTokenFromAddress() {
    const params = new URLSearchParams(location.search);
    const given = params.get('token');
    if (given === null) return;
    storeToken(given.trim());
    params.delete('token');
    const rest = params.toString();
    history.replaceState(null, '', location.pathname + (rest ? '?' + rest : '') + location.hash);
  }

  class Unauthorized extends Error {}

  async function api(path) {
    const token = storedToken();
    if (!token) throw new Unauthorized('No token was given.');
    const response = await fetch(path, { headers: { Authorization: 'Bearer ' + token }, cache: 'no-store' });
    const body = await response.json().catch(() => ({}));
    if (response.status === 401) throw new Unauthorized(body.error || 'The token was refused.');
    if (!response.ok) throw new Error(path + ': ' + (body.error || 'HTTP ' + response.status));
    return body;
  }

  // ---- small helpers ----

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === 'text') node.textContent = v;
      else if (k === 'class') node.className = v;
      else node.setAttribute(k, v);
    }
    for (const child of [].concat(children || [])) {
      if (child === null || child === undefined) continue;
      node.append(typeof child === 'string' ? document.createTextNode(child) : child);
    }
    return node;
  }

  function svg(tag, attrs, text) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function replace(id, ...children) {
    const node = document.getElementById(id);
    node.replaceChildren(...children);
  }

  function ago(ms) {
    if (!ms) return '';
    const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
    if (s < 90) return s + ' s ago';
    if (s < 5400) return Math.round(s / 60) + ' min ago';
    if (s < 129600) return Math.round(s / 3600) + ' h ago';
    return Math.round(s / 86400) + ' d ago';
  }

  function clock(ms) {
    const d = new Date(ms);
    const two = (n) => String(n).padStart(2, '0');
    return two(d.getHours()) + ':' + two(d.getMinutes());
  }

  function value(v) {
    if (v === undefined) return '(absent)';
    return typeof v === 'string' ? v : JSON.stringify(v);
  }

  // Prometheus durations (`1h30m`, `5m`, `3d`) in milliseconds, to order the windows.
  function durationMs(text) {
    const units = { d: 86400000, h: 3600000, m: 60000, s: 1000, ms: 1 };
    let total = 0;
    for (const [, n, unit] of String(text).matchAll(/(\d+)(ms|d|h|m|s)/g)) total += Number(n) * units[unit];
    return total;
  }

  function badge(text, kind) {
    return el('span', { class: 'badge ' + kind, text: text });
  }

  function table(headings, rows) {
    return el('table', {}, [
      el('thead', {}, el('tr', {}, headings.map((h) => el('th', { text: h })))),
      el('tbody', {}, rows),
    ]);
  }

  // ---- the sections ----

  function renderHealth(health) {
    const lab = health.lab || { health: 'Unknown', reasons: [] };
    const top = document.getElementById('lab-health');
    top.className = 'badge badge-' + lab.health;
    top.textContent = 'lab: ' + lab.health;
    const rows = (health.components || []).map((c) =>
      el('tr', { 'data-component': c.name }, [
        el('td', { text: c.name }),
        el('td', {}, badge(c.health, 'badge-' + c.health)),
        el('td', { text: String(c.children) }),
        el('td', {}, c.reasons.length
          ? el('ul', { class: 'fields' }, c.reasons.map((r) => el('li', { text: r.subject + ': ' + r.health + (r.reason ? ' (' + r.reason + ')' : '') })))
          : el('span', { class: 'muted', text: '—' })),
      ]));
    replace('components', rows.length
      ? table(['Component', 'Health', 'Judged', 'Why'], rows)
      : el('p', { class: 'muted', text: 'No component has a verdict yet.' }));
  }

  function renderDrift(drift) {
    const s = drift.stats;
    document.getElementById('drift-stats').textContent = s
      ? s.objects + ' objects managed over ' + s.watches + ' watches' + (s.ready ? '' : ' (listing)') + '; ' +
        s.detected + ' drifts detected, ' + s.heals + ' healed, ' + s.contested + ' contested since the engine started.'
      : 'The drift engine is not running (no component recorded by idp-lab apply --inventory).';
    const objects = drift.objects || [];
    if (!objects.length) {
      replace('drift', el('p', { class: 'muted', text: 'No drift: everything the watchdog watches is as idp-lab applied it.' }));
      return;
    }
    const rows = objects.map((d) => {
      const fields = d.fields.map((f) => el('li', {}, [
        el('code', { text: f.path || '(the whole object)' }),
        ': ' + value(f.live) + ' → ' + value(f.desired),
        f.manager ? el('span', { class: 'muted', text: ' by ' + f.manager + (f.evidence === 'last_writer' ? ' (last writer)' : '') }) : null,
        f.report_only ? el('span', { class: 'muted', text: ' (report only)' }) : null,
      ]));
      const contested = (d.contested || []).map((c) => el('li', { class: 'firing', text: 'contested: ' + c.path + ' by ' + c.manager + ' (' + c.reverts + ' reverts)' }));
      return el('tr', { class: 'drift-object', 'data-object': d.object }, [
        el('td', { text: d.component }),
        el('td', {}, [el('code', { text: d.object }), d.exists ? null : el('div', { class: 'firing', text: 'deleted' })]),
        el('td', {}, el('ul', { class: 'fields' }, fields.concat(contested))),
        el('td', { text: d.manager || '—' }),
        el('td', {}, [badge(d.state, 'state-' + d.state), el('div', { class: 'muted', text: d.policy + ', ' + d.heals + ' heals' })]),
        el('td', { text: ago(Date.parse(d.since)) }),
      ]);
    });
    replace('drift', table(['Component', 'Object', 'Fields (live → desired)', 'Manager', 'State', 'Since'], rows));
  }

  // One SLO's chart: its burn rates per window (top) and its remaining budget (bottom)
  // over time, as inline SVG.
  function chart(slo) {
    const samples = slo.samples || [];
    const W = 640, H = 240, left = 44, right = 12, top = 10;
    const burnH = 130, gap = 26, budgetH = 56;
    const plotW = W - left - right;
    const windows = [...new Set(samples.flatMap((s) => Object.keys(s.burn || {})))].sort((a, b) => durationMs(a) - durationMs(b));
    const t0 = samples.length ? samples[0].at : Date.now();
    let t1 = samples.length ? samples[samples.length - 1].at : Date.now();
    if (t1 - t0 < 60000) t1 = t0 + 60000;
    const x = (t) => left + ((t - t0) / (t1 - t0)) * plotW;
    const burns = samples.flatMap((s) => Object.values(s.burn || {}).filter((v) => typeof v === 'number'));
    const burnMax = Math.max(1, ...burns) * 1.1;
    const yBurn = (v) => top + burnH - (v / burnMax) * burnH;
    const budgets = samples.map((s) => s.budget_remaining).filter((v) => typeof v === 'number');
    const bMin = Math.min(0, ...budgets), bMax = Math.max(1, ...budgets);
    const budgetTop = top + burnH + gap;
    const yBudget = (v) => budgetTop + budgetH - ((v - bMin) / (bMax - bMin)) * budgetH;

    const root = svg('svg', { class: 'slo-chart', viewBox: '0 0 ' + W + ' ' + H, role: 'img', 'data-slo': slo.slo });
    root.append(svg('title', {}, 'Burn rates and remaining error budget of ' + slo.slo));
    // Axes and the burn rate 1 line (the budget lasts exactly the window).
    root.append(svg('line', { class: 'axis', x1: left, y1: top + burnH, x2: W - right, y2: top + burnH }));
    root.append(svg('line', { class: 'axis', x1: left, y1: top, x2: left, y2: top + burnH }));
    root.append(svg('line', { class: 'threshold', x1: left, y1: yBurn(1), x2: W - right, y2: yBurn(1) }));
    root.append(svg('text', { x: left - 4, y: yBurn(1) + 3, 'text-anchor': 'end' }, '1×'));
    if (yBurn(1) - top > 14) {
      root.append(svg('text', { x: left - 4, y: top + 8, 'text-anchor': 'end' }, burnMax.toFixed(burnMax < 10 ? 1 : 0) + '×'));
    }
    root.append(svg('text', { x: left, y: top + burnH + 12 }, clock(t0)));
    root.append(svg('text', { x: W - right, y: top + burnH + 12, 'text-anchor': 'end' }, clock(t1)));
    windows.forEach((w, i) => {
      let d = '';
      let pen = false;
      let points = 0;
      for (const s of samples) {
        const v = s.burn ? s.burn[w] : null;
        if (typeof v !== 'number') { pen = false; continue; }
        d += (pen ? ' L' : ' M') + x(s.at).toFixed(1) + ' ' + yBurn(v).toFixed(1);
        pen = true;
        points += 1;
      }
      const color = COLORS[i % COLORS.length];
      if (points === 1) {
        const s = samples.find((p) => p.burn && typeof p.burn[w] === 'number');
        root.append(svg('circle', { class: 'dot', cx: x(s.at), cy: yBurn(s.burn[w]), r: 2.5, fill: color }));
      } else if (d) {
        root.append(svg('path', { class: 'series', d: d.trim(), stroke: color, 'data-window': w }));
      }
    });
    // The budget panel: 100 % and 0 % lines, the remaining budget over time.
    root.append(svg('line', { class: 'axis', x1: left, y1: yBudget(0), x2: W - right, y2: yBudget(0) }));
    root.append(svg('line', { class: 'threshold', x1: left, y1: yBudget(1), x2: W - right, y2: yBudget(1) }));
    root.append(svg('text', { x: left - 4, y: yBudget(1) + 3, 'text-anchor': 'end' }, '100%'));
    root.append(svg('text', { x: left - 4, y: yBudget(0) + 3, 'text-anchor': 'end' }, '0%'));
    root.append(svg('text', { x: left, y: budgetTop - 4 }, 'error budget remaining'));
    let d = '';
    let pen = false;
    for (const s of samples) {
      if (typeof s.budget_remaining !== 'number') { pen = false; continue; }
      d += (pen ? ' L' : ' M') + x(s.at).toFixed(1) + ' ' + yBudget(s.budget_remaining).toFixed(1);
      pen = true;
    }
    if (d) root.append(svg('path', { class: 'budget', d: d.trim() }));
    const legend = el('div', { class: 'legend' }, windows.map((w, i) => {
      const swatch = el('span', { class: 'swatch' });
      swatch.style.background = COLORS[i % COLORS.length];
      return el('span', {}, [swatch, 'burn ' + w]);
    }));
    return [root, legend];
  }

  function renderSlos(answer) {
    const slos = answer.slos || [];
    if (!slos.length) {
      replace('slos', el('p', { class: 'muted', text: 'No SLO sample in the last 24 hours.' }));
      return;
    }
    const cards = slos.map((slo) => {
      const latest = slo.latest || {};
      const budget = typeof latest.budget_remaining === 'number' ? (latest.budget_remaining * 100).toFixed(1) + ' %' : 'unknown';
      const burns = Object.entries(latest.burn || {})
        .sort((a, b) => durationMs(a[0]) - durationMs(b[0]))
        .map(([w, v]) => w + ' ' + (typeof v === 'number' ? v.toFixed(2) : '—'));
      const firing = (latest.firing || []).length
        ? el('span', { class: 'firing', text: 'firing: ' + latest.firing.join(', ') })
        : el('span', { class: 'muted', text: 'no row fires' });
      return el('div', { class: 'slo', 'data-slo': slo.slo }, [
        el('h3', {}, [el('code', { text: slo.slo }), latest.objective ? el('span', { class: 'muted', text: ' ' + latest.objective + ' %' }) : null]),
        el('div', { class: 'figures' }, [
          el('span', { text: 'budget remaining ' + budget }),
          el('span', { class: 'muted', text: 'burn ' + burns.join(' · ') }),
          firing,
          el('span', { class: 'muted', text: ago(latest.at) }),
        ]),
        ...chart(slo),
      ]);
    });
    replace('slos', el('div', { class: 'slos' }, cards));
  }

  function describeTrigger(t) {
    const rest = Object.entries(t).filter(([k]) => k !== 'on').map(([k, v]) => k + '=' + (typeof v === 'string' ? v : JSON.stringify(v)));
    return t.on + (rest.length ? ' ' + rest.join(' ') : '');
  }

  function describeCause(c) {
    if (!c) return '';
    if (c.on === 'alert') return 'alert ' + ((c.labels && c.labels.alertname) || c.fingerprint || '');
    return describeTrigger(c);
  }

  function renderPlaybooks(answer) {
    const playbooks = answer.playbooks || [];
    if (!playbooks.length) {
      replace('playbooks', el('p', { class: 'muted', text: 'No playbook is configured.' }));
      return;
    }
    const rows = playbooks.map((p) => {
      const last = p.last_run;
      const runs = Object.entries(p.runs || {}).map(([status, n]) => status + ' ' + n).join(' · ');
      return el('tr', { 'data-playbook': p.name }, [
        el('td', {}, [el('code', { text: p.name }), p.configured ? null : el('div', { class: 'muted', text: 'no longer configured' }),
          p.dry_run ? el('div', { class: 'muted', text: 'dry run' }) : null]),
        el('td', {}, el('ul', { class: 'fields' }, (p.triggers || []).map((t) => el('li', { text: describeTrigger(t) })))),
        el('td', {}, el('ul', { class: 'fields' }, (p.actions || []).map((a) => el('li', { text: a })))),
        el('td', { text: p.rate_limit ? p.rate_limit + (p.cooldown_s ? ', cool-down ' + p.cooldown_s + ' s' : '') : '—' }),
        el('td', {}, last
          ? [badge(last.status, 'run-' + last.status), el('div', { class: 'muted', text: ago(last.at_ms) + ', ' + describeCause(last.trigger) })]
          : el('span', { class: 'muted', text: 'never' })),
        el('td', { text: runs || '—' }),
      ]);
    });
    replace('playbooks', table(['Playbook', 'Triggers', 'Actions', 'Limit', 'Last run', 'Runs'], rows));
  }

  // ---- the page ----

  function needToken(reason) {
    storeToken(null);
    if (timer) clearTimeout(timer);
    timer = null;
    document.getElementById('token-reason').textContent = reason;
    const app = document.getElementById('app');
    app.hidden = true;
    for (const id of ['components', 'drift', 'slos', 'playbooks', 'drift-stats']) replace(id);
    document.getElementById('need-token').hidden = false;
    const top = document.getElementById('lab-health');
    top.className = 'badge badge-none';
    top.textContent = 'lab: no token';
  }

  async function refresh() {
    timer = null;
    const wantSlos = Date.now() - lastSlos >= SLO_REFRESH_MS;
    try {
      const [health, drift, playbooks, slos] = await Promise.all([
        api('/api/v1/health'),
        api('/api/v1/drift'),
        api('/api/v1/playbooks'),
        wantSlos ? api('/api/v1/slos?since=24h') : Promise.resolve(null),
      ]);
      document.getElementById('need-token').hidden = true;
      document.getElementById('app').hidden = false;
      document.getElementById('error').hidden = true;
      renderHealth(health);
      renderDrift(drift);
      renderPlaybooks(playbooks);
      if (slos) {
        renderSlos(slos);
        lastSlos = Date.now();
      }
      document.getElementById('updated').textContent = 'updated ' + new Date().toLocaleTimeString();
    } catch (e) {
      if (e instanceof Unauthorized) {
        needToken(e.message);
        return;
      }
      const error = document.getElementById('error');
      error.textContent = 'The lab daemon did not answer: ' + e.message;
      error.hidden = false;
    }
    timer = setTimeout(refresh, REFRESH_MS);
  }

  function start() {
    takeTokenFromAddress();
    document.getElementById('token-form').addEventListener('submit', (event) => {
      event.preventDefault();
      const input = document.getElementById('token-input');
      const token = input.value.trim();
      input.value = '';
      if (!token) return;
      storeToken(token);
      lastSlos = 0;
      refresh();
    });
    if (!storedToken()) {
      needToken('No token was given.');
      return;
    }
    refresh();
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
