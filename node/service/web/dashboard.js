// Federation dashboard: reads /api/status every 5 s and shows it.
// Plain ES2020, no dependencies, no external resources (docs/dashboard.md).
'use strict';
(() => {
  const REFRESH_MS = 5000;
  const TIMEOUT_MS = 4000;
  const FRESH_S = 60;   // replica copies younger than this are fresh
  const STALE_S = 900;  // older than this is stale (the node's origin_stale alert, by default)
  const ASTANA_MS = 5 * 3600 * 1000; // Kazakhstan: UTC+5

  // Code, English name, Russian name, grid row, grid column, column span: a schematic map
  // (west to east, north to south). Source: tools/data/kz-regions.tsv.
  const JURIS = [
    ['KZ-27', 'West Kazakhstan', 'Западно-Казахстанская область', 1, 1],
    ['KZ-39', 'Kostanay', 'Костанайская область', 1, 3],
    ['KZ-59', 'North Kazakhstan', 'Северо-Казахстанская область', 1, 4],
    ['KZ-55', 'Pavlodar', 'Павлодарская область', 1, 5],
    ['KZ', 'Central bodies', 'Центральные органы', 1, 7],
    ['KZ-23', 'Atyrau', 'Атырауская область', 2, 1],
    ['KZ-15', 'Aktobe', 'Актюбинская область', 2, 2],
    ['KZ-11', 'Akmola', 'Акмолинская область', 2, 4],
    ['KZ-71', 'Astana city', 'Астана', 2, 5],
    ['KZ-10', 'Abai', 'Абайская область', 2, 6],
    ['KZ-63', 'East Kazakhstan', 'Восточно-Казахстанская область', 2, 7],
    ['KZ-47', 'Mangystau', 'Мангистауская область', 3, 1],
    ['KZ-43', 'Kyzylorda', 'Кызылординская область', 3, 2],
    ['KZ-62', 'Ulytau', 'Улытауская область', 3, 3],
    ['KZ-35', 'Karaganda', 'Карагандинская область', 3, 4, 2],
    ['KZ-33', 'Jetisu', 'Жетысуская область', 3, 6],
    ['KZ-61', 'Turkistan', 'Туркестанская область', 4, 3],
    ['KZ-31', 'Jambyl', 'Жамбылская область', 4, 4],
    ['KZ-19', 'Almaty Region', 'Алматинская область', 4, 5],
    ['KZ-79', 'Shymkent city', 'Шымкент', 5, 3],
    ['KZ-75', 'Almaty city', 'Алматы', 5, 5],
  ];
  const NAMES = new Map(JURIS.map((j) => [j[0], j]));
  const ALERTS = {
    fork: 'Fork', peer_refusing: 'Peer refusing records', peer_silent: 'Peer silent',
    origin_stale: 'Origin stale', map_full: 'Storage nearly full', clock_skew: 'Clock skew',
  };
  const ALERT_ORDER = ['fork', 'peer_refusing', 'map_full', 'peer_silent', 'origin_stale', 'clock_skew'];

  const $ = (sel) => document.querySelector(sel);
  const tid = (id) => document.querySelector(`[data-testid="${id}"]`);
  const nameOf = (code) => (NAMES.get(code) || [code, code])[1];

  function el(tag, attrs = {}, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (k === 'class') e.className = v; else e.setAttribute(k, v);
    }
    e.append(...kids);
    return e;
  }

  // Writes only what changed, so that a refresh moves nothing on the page.
  function put(e, text, cls, value) {
    if (!e) return;
    text = String(text);
    if (e.textContent !== text) e.textContent = text;
    if (cls !== undefined && e.className !== cls) e.className = cls;
    if (value !== undefined && value !== null && e.dataset.value !== String(value)) e.dataset.value = String(value);
  }
  const putId = (id, text, cls, value) => put(tid(id), text, cls, value);

  // -- formats --
  const int = (n) => (n === null || n === undefined ? '—' : Number(n).toLocaleString('en-US'));
  function pct(share) {
    if (share === null || share === undefined) return '—';
    const p = share * 100;
    return (p === 0 || p === 100 ? p.toFixed(0) : p < 10 ? p.toFixed(1) : p.toFixed(0)) + '%';
  }
  function age(ms, short = false) {
    if (ms === null || ms === undefined || ms < 0) return '—';
    const s = ms / 1000;
    if (s < 10) return `${s.toFixed(1)} s`;
    if (s < 60) return `${Math.round(s)} s`;
    if (s < 3600) return `${Math.floor(s / 60)} min`;
    const [h, m, d] = [Math.floor(s / 3600), Math.floor((s % 3600) / 60), Math.floor(s / 86400)];
    if (s < 86400) return short ? `${h}h ${m}m` : `${h} h ${m} min`;
    return short ? `${d}d ${h % 24}h` : `${d} d ${h % 24} h`;
  }
  const ago = (ms, now) => (!ms ? 'never' : `${age(Math.max(0, now - ms))} ago`);
  function skew(ms) {
    const a = Math.abs(ms);
    const sign = ms < 0 ? '−' : ms > 0 ? '+' : '';
    return a < 1000 ? `${sign}${a} ms` : `${sign}${(a / 1000).toFixed(1)} s`;
  }
  const astana = (ms) => new Date(ms + ASTANA_MS).toISOString().slice(0, 19).replace('T', ' ');

  function overdueBand(r) {
    if (!r || !r.count) return 'none';
    const s = r.share_overdue;
    return s === 0 ? 'ok' : s < 0.05 ? 'low' : s < 0.15 ? 'mid' : 'high';
  }
  function freshBand(r) {
    if (!r || r.source === 'missing' || r.staleness_s === null) return 'bad';
    if (r.source === 'live') return 'live';
    return r.staleness_s < FRESH_S ? 'fresh' : r.staleness_s < STALE_S ? 'aging' : 'bad';
  }

  // -- the map --
  function tile(code, name, ru, row, col, span) {
    const t = (k) => `region-${code}-${k}`;
    const li = el('li', { class: 'tile absent', 'data-testid': `region-${code}`, title: ru ? `${name} · ${ru}` : name },
      el('h3', { class: 't-name' }, el('span', { class: 't-code' }, code), ' ',
        name.replace(/^(West|North|East) /, (w) => `${w[0]}. `)),
      el('p', { class: 't-absent' }, 'no data yet'),
      el('p', { class: 't-count' },
        el('span', { class: 'big', 'data-testid': t('count') }, '—'), el('span', { class: 'unit' }, 'appeals')),
      el('dl', { class: 't-nums' },
        el('dt', {}, 'open'), el('dd', { 'data-testid': t('open') }, '—'),
        el('dt', {}, 'overdue'), el('dd', { 'data-testid': t('overdue') }, '—'),
        el('dt', {}, 'share'), el('dd', { class: 'share', 'data-testid': t('overdue-share') }, '')),
      el('p', { class: 't-fresh' },
        el('span', { class: 'dot', 'aria-hidden': 'true' }),
        el('span', { class: 't-src', 'data-testid': t('source') }, ''), ' ',
        el('span', { 'data-testid': t('staleness'), title: 'age of this node\'s copy' }, '—'),
        ' · lag ', el('span', { 'data-testid': t('lag') }, '—')));
    if (row) li.style.gridArea = `${row} / ${col} / auto / span ${span || 1}`;
    li.dataset.code = code;
    $('#map').append(li);
    return li;
  }

  function renderMap(regions) {
    const byCode = new Map(regions.map((r) => [r.code, r]));
    for (const r of regions) if (!tid(`region-${r.code}`)) tile(r.code, 'other', '', 0, 0); // not in JURIS
    for (const li of $('#map').children) {
      const code = li.dataset.code;
      const r = byCode.get(code);
      const t = (k) => `region-${code}-${k}`;
      if (!r) {
        li.className = 'tile absent';
        put(li.querySelector('.t-absent'), 'not in the federation');
        putId(t('source'), '');
        for (const k of ['count', 'open', 'overdue', 'staleness', 'lag']) putId(t(k), '—');
        putId(t('overdue-share'), '');
        continue;
      }
      li.className = `tile od-${overdueBand(r)} fr-${freshBand(r)}${code === 'KZ' ? ' central' : ''}`;
      putId(t('source'), r.source, `t-src src-${freshBand(r)}`);
      putId(t('count'), int(r.count), r.count >= 10000 ? 'big long' : 'big', r.count);
      putId(t('open'), int(r.open), undefined, r.open);
      putId(t('overdue'), int(r.overdue), undefined, r.overdue);
      putId(t('overdue-share'), r.count ? pct(r.share_overdue) : '—', 'share', r.share_overdue);
      putId(t('staleness'), r.source === 'live' ? 'now' : r.staleness_s === null ? 'never heard'
        : age(r.staleness_s * 1000, true),
        undefined, r.staleness_s === null ? 'null' : r.staleness_s);
      putId(t('lag'), int(r.lag_records), undefined, r.lag_records);
      const fresh = li.querySelector('.t-fresh');
      const why = `source ${r.source}; copy ${r.staleness_s === null ? 'never received' : `${age(r.staleness_s * 1000)} old`}; ${r.lag_records} records behind`;
      if (fresh.title !== why) fresh.title = why;
    }
  }

  // -- tables: rows keyed, cells rewritten only when they change --
  function rows(tbody, items, key, cells) {
    const keep = new Set();
    items.forEach((it, i) => {
      const k = key(it);
      keep.add(k);
      const cs = cells(it);
      let tr = [...tbody.children].find((x) => x.dataset.key === k);
      if (!tr) {
        tr = el('tr');
        tr.dataset.key = k;
        cs.forEach((c, j) => tr.append(j === 0 ? el('th', { scope: 'row' }) : el('td')));
      }
      if (tbody.children[i] !== tr) tbody.insertBefore(tr, tbody.children[i] || null);
      cs.forEach((c, j) => {
        const td = tr.children[j];
        if (c.id && td.dataset.testid !== c.id) td.dataset.testid = c.id;
        put(td, c.t, c.cls || (c.num ? 'num' : ''), c.v);
      });
    });
    for (const tr of [...tbody.children]) if (!keep.has(tr.dataset.key)) tr.remove();
  }

  function renderRegionTable(regions) {
    const sorted = [...regions].sort((a, b) => a.code.localeCompare(b.code, 'en', { numeric: true }));
    rows($('#regions tbody'), sorted, (r) => r.code, (r) => {
      const t = (k) => `table-${r.code}-${k}`;
      const n = (k, v, text) => ({ id: t(k), t: text ?? int(v), v, num: true });
      return [
        { t: `${r.code} · ${nameOf(r.code)}` },
        { id: t('source'), t: r.source, cls: `src-${freshBand(r)}` },
        n('staleness', r.staleness_s, r.source === 'live' ? '—' : r.staleness_s === null ? 'never' : age(r.staleness_s * 1000)),
        n('lag', r.lag_records), n('count', r.count), n('open', r.open), n('overdue', r.overdue),
        { id: t('overdue-share'), t: r.count ? pct(r.share_overdue) : '—', v: r.share_overdue, cls: `num od-text-${overdueBand(r)}` },
        n('answered', r.answered),
        n('answered-in-term', r.answered_in_term, r.answered ? `${int(r.answered_in_term)} (${pct(r.share_answered_in_term)})` : '—'),
        n('median-days', r.median_days_to_answer, r.median_days_to_answer === null ? '—' : String(r.median_days_to_answer)),
      ];
    });
  }

  function renderCluster(c) {
    $('#standalone').hidden = !!c;
    $('#repl').hidden = !c;
    if (!c) return;
    const now = c.now_ms;
    const forks = c.forks || [];
    putId('forks-count', forks.length, forks.length ? 'count bad' : 'count');
    $('#no-forks').hidden = forks.length > 0;
    $('#forks').hidden = forks.length === 0;
    rows($('#forks tbody'), forks, (f) => `${f.jurisdiction}/${f.seq}/${f.via}`, (f) => [
      { t: `${f.jurisdiction} · ${nameOf(f.jurisdiction)}` },
      { id: `fork-${f.jurisdiction}-seq`, t: int(f.seq), v: f.seq },
      { t: f.via || '—' }, { t: ago(f.seen_ms, now) },
    ]);
    const banner = $('#banner-fork');
    banner.hidden = forks.length === 0;
    if (forks.length) {
      put(banner, `Fork: ${forks.map((f) => `${f.jurisdiction} signed two records for seq ${f.seq}`).join('; ')}. ` +
        'Its log is frozen on this node until the fork is resolved (docs/operations.md).');
    }
    rows($('#peers tbody'), c.peers || [], (p) => p.jurisdiction, (p) => {
      const t = (k) => `peer-${p.jurisdiction}-${k}`;
      return [
        { t: `${p.jurisdiction} · ${nameOf(p.jurisdiction)}` },
        { id: t('reachable'), t: p.reachable ? 'yes' : 'no', v: p.reachable, cls: p.reachable ? 'good' : 'bad' },
        { id: t('last-contact'), t: ago(p.last_contact_ms, now), v: p.last_contact_ms },
        { id: t('last-ok'), t: ago(p.last_ok_ms, now), v: p.last_ok_ms },
        { id: t('errors'), t: int(p.errors), v: p.errors, cls: p.errors ? 'num warn' : 'num' },
        { id: t('refused'), t: int(p.refused_records), v: p.refused_records, cls: p.refused_records ? 'num bad' : 'num' },
        { id: t('records-in'), t: int(p.records_in), v: p.records_in, num: true },
        { id: t('clock-skew'), t: skew(p.clock_skew_ms), v: p.clock_skew_ms,
          cls: Math.abs(p.clock_skew_ms) > 30000 ? 'num bad' : 'num' },
        { id: t('last-error'), t: p.last_error || '—', cls: p.last_error ? 'err' : 'muted' },
      ];
    });
    rows($('#origins tbody'), c.origins || [], (o) => o.jurisdiction, (o) => {
      const t = (k) => `origin-${o.jurisdiction}-${k}`;
      const sb = o.staleness_ms < FRESH_S * 1000 ? '' : o.staleness_ms < STALE_S * 1000 ? ' warn' : ' bad';
      return [
        { t: `${o.jurisdiction} · ${nameOf(o.jurisdiction)}` },
        { id: t('held'), t: int(o.local_seq), v: o.local_seq, num: true },
        { id: t('best-known'), t: int(o.best_known_seq), v: o.best_known_seq, num: true },
        { id: t('lag'), t: int(o.lag_records), v: o.lag_records, cls: o.lag_records ? 'num warn' : 'num' },
        { id: t('staleness'), t: age(o.staleness_ms), v: o.staleness_ms, cls: `num${sb}` },
        { id: t('frozen'), t: o.frozen ? `FROZEN: ${o.frozen_reason || 'fork'}` : 'no', v: o.frozen,
          cls: o.frozen ? 'bad' : 'muted' },
      ];
    });
  }

  function renderGlance(c, regions) {
    const peers = (c && c.peers) || [];
    const up = peers.filter((p) => p.reachable).length;
    putId('sum-peers-reachable', c ? `${up} of ${peers.length}` : 'standalone', up < peers.length ? 'bad' : '', up);
    const forks = c ? (c.forks || []).length : 0;
    putId('sum-forks', int(forks), forks ? 'bad' : 'good', forks);
    const lag = Math.max(0, ...regions.map((r) => r.lag_records || 0));
    putId('sum-max-lag', `${int(lag)} record${lag === 1 ? '' : 's'}`, lag ? 'warn' : '', lag);
    const missing = regions.filter((r) => r.source === 'missing');
    const copies = regions.filter((r) => r.source === 'replica' && r.staleness_s !== null)
      .sort((a, b) => b.staleness_s - a.staleness_s);
    const oldest = missing[0] || copies[0];
    putId('sum-oldest', !oldest ? 'all live' : oldest.source === 'missing' ? `missing (${oldest.code})`
      : `${age(oldest.staleness_s * 1000)} (${oldest.code})`, oldest ? `fb-${freshBand(oldest)}` : '');
  }

  function renderAlerts(list, now) {
    const sorted = [...list].sort((a, b) =>
      (ALERT_ORDER.indexOf(a.alert) - ALERT_ORDER.indexOf(b.alert)) || a.subject.localeCompare(b.subject));
    putId('alerts-count', sorted.length ? int(sorted.length) : 'none', sorted.length ? 'bad' : 'good', sorted.length);
    $('#alerts-panel').hidden = sorted.length === 0;
    const ul = $('#alerts');
    const keep = new Set();
    sorted.forEach((a, i) => {
      const id = `alert-${a.alert}-${a.subject}`;
      keep.add(id);
      let li = tid(id);
      if (!li) {
        li = el('li', { 'data-testid': id },
          el('strong', {}, ''), ' ', el('span', { class: 'subj' }, ''),
          el('span', { class: 'detail' }, ''), el('span', { class: 'since' }, ''));
      }
      if (ul.children[i] !== li) ul.insertBefore(li, ul.children[i] || null);
      put(li.children[0], ALERTS[a.alert] || a.alert);
      put(li.children[1], `${a.subject} · ${nameOf(a.subject)}`);
      put(li.children[2], a.detail);
      put(li.children[3], `since ${ago(a.since_ms, now)}`);
      li.className = `alert sev-${a.alert === 'fork' || a.alert === 'peer_refusing' || a.alert === 'map_full' ? 'crit' : 'warn'}`;
    });
    for (const li of [...ul.children]) if (!keep.has(li.dataset.testid)) li.remove();
  }

  function renderTotals(regions) {
    const sum = (k) => regions.reduce((s, r) => s + (r[k] || 0), 0);
    const count = sum('count');
    const overdue = sum('overdue');
    putId('total-count', int(count), undefined, count);
    putId('total-open', int(sum('open')), undefined, sum('open'));
    putId('total-overdue', int(overdue), undefined, overdue);
    putId('total-overdue-share', count ? `(${pct(overdue / count)})` : '', `od-text-${overdueBand({ count, share_overdue: count ? overdue / count : 0 })}`);
    putId('total-answered', int(sum('answered')), undefined, sum('answered'));
    const heard = regions.filter((r) => r.source !== 'missing').length;
    putId('total-jurisdictions', `${heard} of ${regions.length}`, heard < regions.length ? 'bad' : '', regions.length);
  }

  function render(d) {
    putId('node-jurisdiction', `${d.jurisdiction} · ${nameOf(d.jurisdiction)}`, undefined, d.jurisdiction);
    putId('node-today', d.today);
    if (d.node) {
      putId('node-head-seq', int(d.node.head_seq), undefined, d.node.head_seq);
      putId('node-appeals', int(d.node.appeals), undefined, d.node.appeals);
      putId('node-software', d.node.software);
    }
    $('#banner-recovering').hidden = !(d.node && d.node.recovering);
    putId('generated-at', `${astana(d.generated_ms)} Astana time`, undefined, d.generated_ms);
    const regions = d.regions || [];
    renderMap(regions);
    renderTotals(regions);
    renderRegionTable(regions);
    renderCluster(d.cluster);
    renderGlance(d.cluster, regions);
    renderAlerts(d.alerts || [], d.generated_ms);
  }

  // -- refreshing, and saying how fresh the page is --
  let lastOk = 0;        // browser time of the last good refresh
  let failures = 0;
  let lastError = '';

  function showState() {
    const st = tid('refresh-status');
    const banner = $('#banner-stale');
    let state;
    let text;
    if (!lastOk && !failures) {
      state = 'loading'; text = 'Loading…';
    } else if (!failures) {
      state = 'ok'; text = 'Live: refreshed every 5 s';
    } else if (lastOk) {
      state = 'stale'; text = `Data stale: refresh failing (${lastError})`;
    } else {
      state = 'error'; text = `Cannot reach the node (${lastError})`;
    }
    if (st.dataset.state !== state || st.textContent !== text) {
      st.dataset.state = state;
      st.textContent = text;
    }
    document.body.classList.toggle('is-stale', state === 'stale');
    banner.hidden = state !== 'stale' && state !== 'error';
    if (!banner.hidden) {
      put(banner, state === 'stale'
        ? `Data stale: ${failures} refresh${failures > 1 ? 'es' : ''} failed (${lastError}). ` +
          `Showing the last data received, ${age(Date.now() - lastOk)} ago; retrying every 5 s.`
        : `No data: the node does not answer (${lastError}); retrying every 5 s.`);
    }
    putId('data-age', lastOk ? `(received ${age(Date.now() - lastOk)} ago)` : '');
  }

  async function refresh() {
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), TIMEOUT_MS);
    try {
      const res = await fetch('/api/status', { cache: 'no-store', signal: ctl.signal });
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      const d = await res.json();
      render(d);
      lastOk = Date.now();
      failures = 0;
    } catch (e) {
      failures += 1;
      lastError = e.name === 'AbortError' ? `no answer in ${TIMEOUT_MS / 1000} s`
        : e instanceof TypeError ? 'node unreachable' : e.message;
    } finally {
      clearTimeout(timer);
      showState();
      setTimeout(refresh, REFRESH_MS);
    }
  }

  for (const j of JURIS) tile(...j);
  setInterval(showState, 1000);
  refresh();
})();
